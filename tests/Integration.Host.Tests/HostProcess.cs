using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Integration.Testing;

namespace Integration.Host.Tests;

/// <summary>The real host as a separate OS process, so tests can kill it the hard way (SIGKILL), as a crash would.</summary>
public sealed class HostProcess : IAsyncDisposable
{
    readonly Process _process;

    HostProcess(Process process, Uri address)
    {
        _process = process;
        Address = address;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(10) };
    }

    public Uri Address { get; }
    public HttpClient Client { get; }

    /// <summary>Starts <c>Integration.Host.dll</c> from the test's output with <paramref name="settings"/> as environment variables, and waits until it is ready.</summary>
    public static async Task<HostProcess> StartAsync(IReadOnlyDictionary<string, string?> settings, bool waitUntilReady = true)
    {
        var port = FreePort();
        var address = new Uri($"http://127.0.0.1:{port}/");
        var info = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "Integration.Host.dll")}\"")
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["ASPNETCORE_URLS"] = address.ToString();
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";
        // Test messages would add traffic other specs do not expect; specs that want them turn them on.
        info.Environment["Integration__Probes__Enabled"] = "false";
        foreach (var (key, value) in settings)
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the host process");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var host = new HostProcess(process, address);
        if (waitUntilReady && !await Eventually.TrueAsync(async () =>
            {
                try
                {
                    using var response = await host.Client.GetAsync(new Uri("/health/live", UriKind.Relative));
                    return response.IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return !process.HasExited && false;
                }
            }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250)))
        {
            await host.DisposeAsync();
            throw new InvalidOperationException($"the host process did not answer on {address} within 60 s");
        }

        return host;
    }

    /// <summary>SIGKILL: no graceful stop, nothing flushed, no in-flight work finished.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    public ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (!_process.HasExited)
            Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
