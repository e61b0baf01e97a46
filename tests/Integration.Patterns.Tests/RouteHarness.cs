using System.Collections.Concurrent;
using Integration.Patterns.Routing;
using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Tests;

/// <summary>A transport the pattern specs run on: each spec runs on every one (contract tests).</summary>
public interface ITransport : IAsyncDisposable
{
    Task StartAsync();

    void Use(IBusRegistrationConfigurator bus, Action<IBusRegistrationContext, IBusFactoryConfigurator> configure);
}

/// <summary>MassTransit's in-memory transport: fast, no services.</summary>
public sealed class InMemory : ITransport
{
    public Task StartAsync() => Task.CompletedTask;

    public void Use(IBusRegistrationConfigurator bus, Action<IBusRegistrationContext, IBusFactoryConfigurator> configure) =>
        bus.UsingInMemory((context, cfg) => configure(context, cfg));

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>The real broker, in a virtual host of the spec's own.</summary>
public sealed class RabbitMq : ITransport
{
    readonly bool _owned = true;
    TestBroker? _broker;
    Integration.Testing.RouteHarness? _raw;

    public RabbitMq()
    {
    }

    /// <summary>A second bus on another transport's virtual host (several consumers of the same queues); the owner deletes the vhost.</summary>
    public RabbitMq(RabbitMq shared)
    {
        ArgumentNullException.ThrowIfNull(shared);
        _broker = shared.Broker;
        _owned = false;
    }

    /// <summary>This spec's virtual host.</summary>
    public TestBroker Broker => _broker ?? throw new InvalidOperationException("Not started");

    /// <summary>The kit's route harness on this virtual host: raw publishing, reading and watching queues as a non-.NET client would.</summary>
    public Integration.Testing.RouteHarness Raw => _raw ?? throw new InvalidOperationException("Not started");

    /// <summary>Publishes a raw body (no MassTransit envelope) to a queue, as a non-.NET producer would.</summary>
    public Task PublishRawAsync(string queue, string? contentType, string body) => Raw.PublishRawAsync(queue, body, contentType);

    /// <summary>Publishes a body with the given AMQP properties to a queue, as a non-.NET producer would.</summary>
    public Task PublishRawAsync(string queue, RabbitMQ.Client.BasicProperties properties, byte[] body) => Raw.PublishRawAsync(queue, properties, body);

    /// <summary>Waits for one message on a queue and takes it as a non-.NET consumer would (null when none came).</summary>
    public async Task<RawDelivery?> TakeRawAsync(string queue, double seconds = 10)
    {
        try
        {
            var taken = await Raw.TakeAsync(queue, TimeSpan.FromSeconds(seconds));
            return new RawDelivery(taken.Body, taken.ContentType, taken.ContentEncoding, taken.Headers);
        }
        catch (AwaitTimeoutException)
        {
            return null;
        }
    }

    public async Task StartAsync()
    {
        _broker ??= await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("patterns");
        _raw ??= await Integration.Testing.RouteHarness.StartAsync(_broker);
    }

    public void Use(IBusRegistrationConfigurator bus, Action<IBusRegistrationContext, IBusFactoryConfigurator> configure) =>
        bus.UsingRabbitMq((context, cfg) =>
        {
            _broker!.ConfigureHost(cfg);
            configure(context, cfg);
        });

    public async ValueTask DisposeAsync()
    {
        if (_raw is not null)
            await _raw.DisposeAsync();
        if (_broker is not null && _owned)
            await _broker.DisposeAsync();
    }
}

/// <summary>A message as a plain AMQP client reads it.</summary>
public sealed record RawDelivery(byte[] Body, string? ContentType, string? ContentEncoding, IReadOnlyDictionary<string, string> Headers);

/// <summary>A message that arrived at a destination queue, with its headers.</summary>
public sealed record Captured<T>(T Message, Headers Headers, Headers? Transport = null, string? ContentType = null);

/// <summary>
/// Runs routes on a transport and captures what arrives at the destination queues (every destination is consumed by a
/// capturing endpoint for <typeparamref name="TOut"/>). Uses MassTransit's DI test harness.
/// </summary>
public sealed class RouteHarness<TOut> : IAsyncDisposable
    where TOut : class
{
    readonly ConcurrentDictionary<string, ConcurrentQueue<Captured<TOut>>> _captured = new(StringComparer.Ordinal);
    readonly ITransport _transport;
    ServiceProvider? _provider;

    RouteHarness(ITransport transport) => _transport = transport;

    public ITestHarness Harness => _provider!.GetRequiredService<ITestHarness>();

    public RouteControl Control => _provider!.GetRequiredService<RouteControl>();

    /// <summary>Starts a bus with <paramref name="routes"/> and capturing endpoints on <paramref name="destinations"/>.</summary>
    /// <param name="capture">Configures each capturing endpoint further, e.g. with a deserializer for the format a raw route passes on.</param>
    public static async Task<RouteHarness<TOut>> StartAsync(ITransport transport, Action<IRouteBuilder> routes, string[] destinations,
        Action<IBusFactoryConfigurator>? configure = null, Action<IServiceCollection>? services = null, Action<IReceiveEndpointConfigurator>? capture = null)
    {
        var harness = new RouteHarness<TOut>(transport);
        await transport.StartAsync();
        try
        {
            var collection = new ServiceCollection();
            services?.Invoke(collection);
            harness._provider = collection
                .AddMassTransitTestHarness(x =>
                {
                    x.AddIntegrationRoutes(routes);
                    transport.Use(x, (context, cfg) =>
                    {
                        configure?.Invoke(cfg);
                        cfg.ConfigureIntegrationRoutes(context);
                        foreach (var destination in destinations)
                        {
                            var queue = harness._captured.GetOrAdd(destination, _ => new ConcurrentQueue<Captured<TOut>>());
                            cfg.ReceiveEndpoint(destination, e =>
                            {
                                e.ConcurrentMessageLimit = 1; // capture in arrival order (the resequencer specs read it)
                                capture?.Invoke(e);
                                e.Handler<TOut>(c =>
                            {
                                queue.Enqueue(new Captured<TOut>(c.Message, c.Headers, c.ReceiveContext.TransportHeaders, c.ReceiveContext.ContentType?.MediaType));
                                return Task.CompletedTask;
                            });
                            });
                        }
                    });
                })
                .BuildServiceProvider(true);
            await harness.Harness.Start();
        }
        catch
        {
            // A spec expecting a start-up failure (a route that fails validation while the container is built, or at the
            // bus start) never sees the harness: release its virtual host here.
            await harness.DisposeAsync();
            throw;
        }

        return harness;
    }

    /// <summary>Sends <paramref name="message"/> to the route's queue.</summary>
    public async Task Send<T>(string queue, T message)
        where T : class =>
        await (await Harness.Bus.GetSendEndpoint(new Uri($"queue:{queue}"))).Send(message);

    /// <summary>What arrived at <paramref name="queue"/> so far.</summary>
    public IReadOnlyList<Captured<TOut>> At(string queue) => _captured.TryGetValue(queue, out var q) ? q.ToList() : [];

    /// <summary>Waits until <paramref name="count"/> messages arrived at <paramref name="queue"/>.</summary>
    public async Task<IReadOnlyList<Captured<TOut>>> WaitFor(string queue, int count = 1, double seconds = 10)
    {
        await Eventually.TrueAsync(() => Task.FromResult(At(queue).Count >= count), TimeSpan.FromSeconds(seconds));
        return At(queue);
    }

    /// <summary>The transport this harness runs on.</summary>
    public ITransport Transport => _transport;

    /// <summary>On RabbitMQ: waits until <paramref name="queue"/> holds <paramref name="count"/> messages and returns true; on other transports: true.</summary>
    public async Task<bool> QueueHolds(string queue, long count, double seconds = 10) =>
        _transport is not RabbitMq rabbit
        || await Eventually.TrueAsync(async () => await rabbit.Broker.QueueMessageCountAsync(queue) == count, TimeSpan.FromSeconds(seconds));

    /// <summary>True when the route faulted the message (it went to the route's error queue).</summary>
    public Task<bool> Faulted<T>()
        where T : class =>
        Harness.Consumed.Any<T>(x => x.Exception is not null);

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_provider is not null)
            {
                await Harness.Stop();
                await _provider.DisposeAsync();
            }
        }
        finally
        {
            await _transport.DisposeAsync();
        }
    }
}
