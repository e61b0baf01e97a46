using System.Collections.Concurrent;
using System.Text.Json;
using Integration.Testing;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Host.Tests.Devices;

/// <summary>A device connected to a host's <c>/hubs/devices</c> with the SignalR .NET client, recording what it receives.</summary>
public sealed class DeviceClient : IAsyncDisposable
{
    readonly ConcurrentQueue<(string Method, JsonElement Payload)> _received = new();
    readonly HubConnection _connection;

    DeviceClient(HubConnection connection, IEnumerable<string> methods)
    {
        _connection = connection;
        foreach (var method in methods)
            _connection.On<JsonElement>(method, payload => _received.Enqueue((method, payload)));
    }

    public IReadOnlyList<(string Method, JsonElement Payload)> Received => [.. _received];

    /// <summary>Connects to the in-process host (long polling through its test server) as <paramref name="deviceId"/>.</summary>
    public static async Task<DeviceClient> ConnectAsync(IntegrationTestHost<Program> host, string deviceId, string? type, params string[] methods)
    {
        var server = (TestServer)host.Services.GetRequiredService<IServer>();
        var query = $"/hubs/devices?deviceId={Uri.EscapeDataString(deviceId)}" + (type is null ? "" : $"&type={Uri.EscapeDataString(type)}");
        var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(server.BaseAddress, query), o =>
            {
                o.Transports = HttpTransportType.LongPolling;
                o.HttpMessageHandlerFactory = _ => server.CreateHandler();
            })
            .Build();
        var client = new DeviceClient(connection, methods);
        await connection.StartAsync();
        return client;
    }

    /// <summary>Waits until a <paramref name="method"/> call matching <paramref name="match"/> arrived; fails listing what did.</summary>
    public async Task<JsonElement> WaitFor(string method, Func<JsonElement, bool> match, double seconds = 30)
    {
        JsonElement found = default;
        var arrived = await Eventually.TrueAsync(() =>
        {
            foreach (var (m, payload) in _received)
                if (m == method && match(payload))
                {
                    found = payload;
                    return Task.FromResult(true);
                }

            return Task.FromResult(false);
        }, TimeSpan.FromSeconds(seconds));
        if (!arrived)
            throw new AwaitTimeoutException($"a matching {method} call", TimeSpan.FromSeconds(seconds),
                _received.IsEmpty ? "nothing received" : string.Join("; ", _received.Select(r => $"{r.Method} {r.Payload.GetRawText()}")));
        return found;
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();
}
