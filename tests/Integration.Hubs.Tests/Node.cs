using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Integration.Caching;
using Integration.Hubs;
using Integration.Testing;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integration.Hubs.Tests;

/// <summary>A transport the specs run on: each spec of a generic fixture runs on every one.</summary>
public interface ITransport : IAsyncDisposable
{
    Task StartAsync();

    void Use(IBusRegistrationConfigurator bus);
}

/// <summary>MassTransit's in-memory transport: one bus, no services.</summary>
public sealed class InMemory : ITransport
{
    public Task StartAsync() => Task.CompletedTask;

    public void Use(IBusRegistrationConfigurator bus) => bus.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>The real broker, in a virtual host of the spec's own; several nodes share it.</summary>
public sealed class RabbitMq : ITransport
{
    TestBroker? _broker;
    IntegrationInfrastructure? _infrastructure;

    public TestBroker Broker => _broker ?? throw new InvalidOperationException("Not started");

    public async Task StartAsync()
    {
        _infrastructure ??= await IntegrationInfrastructure.GetAsync();
        _broker ??= await _infrastructure.CreateVirtualHostAsync("hubs");
    }

    public void Use(IBusRegistrationConfigurator bus) =>
        bus.UsingRabbitMq((context, cfg) =>
        {
            _broker!.ConfigureHost(cfg);
            cfg.ConfigureEndpoints(context);
        });

    /// <summary>The vhost's queues whose name starts with <paramref name="prefix"/>, as the management API describes them.</summary>
    public async Task<List<JsonElement>> QueuesAsync(string prefix)
    {
        using var http = new HttpClient { BaseAddress = _infrastructure!.ManagementUri };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_infrastructure.RabbitMqUser}:{_infrastructure.RabbitMqPassword}")));
        var body = await http.GetStringAsync(new Uri($"api/queues/{Uri.EscapeDataString(Broker.VirtualHost)}", UriKind.Relative));
        return [.. JsonDocument.Parse(body).RootElement.EnumerateArray().Where(q => q.GetProperty("name").GetString()!.StartsWith(prefix, StringComparison.Ordinal))
            .Select(q => q.Clone())];
    }

    public async ValueTask DisposeAsync()
    {
        if (_broker is not null)
            await _broker.DisposeAsync();
    }
}

/// <summary>
/// One host of a service: Kestrel on a free port with the device hub and cache invalidation on <paramref name="transport"/>,
/// recording the faults its consumers raise.
/// </summary>
public sealed class Node : IAsyncDisposable
{
    readonly WebApplication _app;

    Node(WebApplication app, FaultRecorder faults)
    {
        _app = app;
        Faults = faults;
    }

    public IServiceProvider Services => _app.Services;

    public Uri BaseAddress => new(_app.Urls.First());

    public FaultRecorder Faults { get; }

    public IBus Bus => Services.GetRequiredService<IBus>();

    public static async Task<Node> StartAsync(ITransport transport, Action<DeviceHubConfigurator>? hub = null, Action<CacheInvalidationConfigurator>? caching = null)
    {
        await transport.StartAsync();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddMassTransit(x =>
        {
            if (hub is not null)
                x.AddDeviceHub(hub);
            if (caching is not null)
                x.AddCacheInvalidation(caching);
            transport.Use(x);
        });
        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o => o.WaitUntilStarted = true);
        var app = builder.Build();
        var faults = new FaultRecorder();
        app.Services.GetRequiredService<IBus>().ConnectConsumeObserver(faults);
        if (hub is not null)
            app.MapDeviceHub();
        await app.StartAsync();
        return new Node(app, faults);
    }

    /// <summary>Connects a SignalR client as <paramref name="deviceId"/>, recording the calls of <paramref name="methods"/>.</summary>
    public async Task<Device> ConnectAsync(string deviceId, string? type = null, params string[] methods)
    {
        var query = $"/hubs/devices?deviceId={Uri.EscapeDataString(deviceId)}" + (type is null ? "" : $"&type={Uri.EscapeDataString(type)}");
        var connection = new HubConnectionBuilder().WithUrl(new Uri(BaseAddress, query)).Build();
        var device = new Device(connection, methods);
        var connections = _app.Services.GetRequiredService<DeviceConnections>();
        var before = connections.Local.Count(d => d.DeviceId == deviceId);
        await connection.StartAsync();
        // The client's start returns at the handshake; the hub joins the device's group and lists it in OnConnectedAsync,
        // which runs after it. Connected means both: an event published now must reach this device.
        if (!await Eventually.TrueAsync(() => Task.FromResult(connections.Local.Count(d => d.DeviceId == deviceId) > before), TimeSpan.FromSeconds(20)))
            throw new AwaitTimeoutException($"device '{deviceId}' listed by the hub", TimeSpan.FromSeconds(20), "the hub did not list the connection");
        return device;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>A connected device and what it received.</summary>
public sealed class Device : IAsyncDisposable
{
    readonly ConcurrentQueue<(string Method, JsonElement Payload)> _received = new();
    readonly HubConnection _connection;

    internal Device(HubConnection connection, IEnumerable<string> methods)
    {
        _connection = connection;
        foreach (var method in methods)
            _connection.On<JsonElement>(method, payload => _received.Enqueue((method, payload)));
    }

    public IReadOnlyList<(string Method, JsonElement Payload)> Received => [.. _received];

    public async Task<JsonElement> WaitFor(string method, Func<JsonElement, bool> match, double seconds = 20)
    {
        JsonElement found = default;
        var arrived = await Eventually.TrueAsync(() =>
        {
            var hit = _received.FirstOrDefault(r => r.Method == method && match(r.Payload));
            found = hit.Payload;
            return Task.FromResult(hit.Method is not null);
        }, TimeSpan.FromSeconds(seconds));
        if (!arrived)
            throw new AwaitTimeoutException($"a matching {method} call", TimeSpan.FromSeconds(seconds),
                _received.IsEmpty ? "nothing received" : string.Join("; ", _received.Select(r => $"{r.Method} {r.Payload.GetRawText()}")));
        return found;
    }

    public async ValueTask DisposeAsync() => await _connection.DisposeAsync();
}

/// <summary>Faults raised by consumers (after retries, on their way to the error queue).</summary>
public sealed class FaultRecorder : IConsumeObserver
{
    readonly ConcurrentQueue<(Type Message, Exception Exception)> _faults = new();

    public IReadOnlyList<(Type Message, Exception Exception)> All => [.. _faults];

    public Task PreConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception)
        where T : class
    {
        _faults.Enqueue((typeof(T), exception));
        return Task.CompletedTask;
    }
}
