using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Integration.Testing;

/// <summary>
/// A host (an application assembly from the test's output, e.g. <c>MyWorker.dll</c>) as a child process: it can be SIGKILLed like a
/// crashed machine, restarted on the same port, and everything it writes to stdout/stderr is kept for asserting on.
/// </summary>
public sealed class HostProcess : IAsyncDisposable
{
    readonly Process _process;
    readonly ConcurrentQueue<string> _output;

    HostProcess(Process process, Uri address, ConcurrentQueue<string> output)
    {
        _process = process;
        _output = output;
        Address = address;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Where the host serves HTTP.</summary>
    public Uri Address { get; }

    /// <summary>A client for <see cref="Address"/>.</summary>
    public HttpClient Client { get; }

    /// <summary>
    /// How long <see cref="StartAsync"/> waits for <c>/health/live</c> unless told otherwise: two minutes, since a cold .NET
    /// host on a machine also running a broker, a database and other test projects can take more than one to answer.
    /// </summary>
    public static readonly TimeSpan DefaultStartTimeout = TimeSpan.FromMinutes(2);

    /// <summary>True once the process ended.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Every line the host wrote so far (stdout and stderr, in arrival order).</summary>
    public string Output => string.Join('\n', _output);

    /// <summary>
    /// Starts <paramref name="entryAssembly"/> (a file name in the test's output directory, or a path) with <paramref name="settings"/> as environment variables (<c>Integration:X</c> → <c>Integration__X</c>) on
    /// <paramref name="port"/> (a free one when null) and, unless told otherwise, waits until <c>/health/live</c> answers (<see cref="DefaultStartTimeout"/> unless <paramref name="timeout"/> says otherwise).
    /// </summary>
    public static async Task<HostProcess> StartAsync(string entryAssembly, IReadOnlyDictionary<string, string?> settings, int? port = null, bool waitUntilLive = true,
        TimeSpan? timeout = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(entryAssembly);
        ArgumentNullException.ThrowIfNull(settings);
        var address = new Uri($"http://127.0.0.1:{port ?? FreePort()}/");
        var info = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, entryAssembly)}\"")
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["ASPNETCORE_URLS"] = address.ToString();
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Testing";
        info.Environment["DOTNET_gcServer"] = "0";
        foreach (var (key, value) in settings)
            info.Environment[key.Replace(":", "__", StringComparison.Ordinal)] = value;

        var output = new ConcurrentQueue<string>();
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the host process");
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
                output.Enqueue(e.Data);
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
                output.Enqueue(e.Data);
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var host = new HostProcess(process, address, output);
        if (waitUntilLive && !await host.WaitUntilAsync("/health/live", timeout ?? DefaultStartTimeout).ConfigureAwait(false))
        {
            var log = host.Output;
            await host.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException($"the host process did not answer on {address} within {timeout ?? DefaultStartTimeout}; its output:\n{Tail(log)}");
        }

        return host;
    }

    /// <summary>Polls <paramref name="path"/> until it answers 2xx (true) or the time is up or the process died (false).</summary>
    public async Task<bool> WaitUntilAsync(string path, TimeSpan timeout)
    {
        var answered = await Eventually.TrueAsync(async () =>
        {
            if (_process.HasExited)
                return true;
            try
            {
                using var response = await Client.GetAsync(new Uri(path, UriKind.Relative)).ConfigureAwait(false);
                return response.IsSuccessStatusCode;
            }
            catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
            {
                return false;
            }
        }, timeout, TimeSpan.FromMilliseconds(200)).ConfigureAwait(false);
        return answered && !_process.HasExited;
    }

    /// <summary>The port the host listens on.</summary>
    public int Port => Address.Port;

    /// <summary>The operating system's id of the host process (for sampling its memory, handles and threads from <c>/proc</c>).</summary>
    public int ProcessId => _process.Id;

    /// <summary>SIGKILL: no graceful stop, nothing flushed, no in-flight work finished.</summary>
    public void Kill()
    {
        if (_process.HasExited)
            return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
    }

    /// <summary>A free loopback port.</summary>
    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    static string Tail(string log) => log.Length <= 4000 ? log : log[^4000..];

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        Client.Dispose();
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
