using System.Diagnostics;
using Integration.Benchmarks.Harness;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Benchmarks.Scenarios;

/// <summary>A message of the configured size for the MassTransit cases.</summary>
public sealed record BenchMessage(int Index, string Payload);

/// <summary>The two throughput baselines every other figure is compared with, measured in the same run.</summary>
public static class Baselines
{
    public const string RawName = "raw RabbitMQ.Client";
    public const string MassTransitName = "plain MassTransit";

    /// <summary>Persistent messages published with confirms (in-flight window = concurrency) and consumed with manual acks, msg/s end to end.</summary>
    public static Task<double> RawThroughput(BenchContext context) =>
        context.Baseline(RawName, () => context.MedianAsync(count => MeasureRaw(context, count)));

    /// <summary>MassTransit send (confirms on) + consume on one queue, msg/s end to end.</summary>
    public static Task<double> MassTransitThroughput(BenchContext context) =>
        context.Baseline(MassTransitName, () => context.MedianAsync(count => MeasureMassTransit(context, count)));

    static async Task<double> MeasureRaw(BenchContext context, int count)
    {
        var settings = context.Settings;
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-raw");
        var factory = new ConnectionFactory { Uri = broker.AmqpUri };
        await using var consumerConnection = await factory.CreateConnectionAsync("bench-raw-consumer");
        await using var publisherConnection = await factory.CreateConnectionAsync("bench-raw-publisher");
        await using var consumerChannel = await consumerConnection.CreateChannelAsync();
        await consumerChannel.QueueDeclareAsync("raw-bench", durable: true, exclusive: false, autoDelete: false);
        await consumerChannel.BasicQosAsync(0, (ushort)settings.Prefetch, false);

        var countdown = new Countdown(count);
        var consumer = new AsyncEventingBasicConsumer(consumerChannel);
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            await consumerChannel.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            countdown.Signal();
        };
        await consumerChannel.BasicConsumeAsync("raw-bench", autoAck: false, consumer);

        await using var publisher = await publisherConnection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        var body = new byte[settings.Size];
        var properties = new BasicProperties { Persistent = true, ContentType = "application/octet-stream" };

        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, settings.Concurrency,
            async _ => await publisher.BasicPublishAsync("", "raw-bench", mandatory: false, properties, body));
        await countdown.WaitAsync(TimeSpan.FromMinutes(2), RawName);
        return count / stopwatch.Elapsed.TotalSeconds;
    }

    sealed class CountingConsumer(Countdown countdown) : IConsumer<BenchMessage>
    {
        public Task Consume(ConsumeContext<BenchMessage> context)
        {
            countdown.Signal();
            return Task.CompletedTask;
        }
    }

    static async Task<double> MeasureMassTransit(BenchContext context, int count)
    {
        var settings = context.Settings;
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-mt");
        var countdown = new Countdown(count);
        await using var provider = new ServiceCollection()
            .AddSingleton(countdown)
            .AddMassTransit(x =>
            {
                x.AddConsumer<CountingConsumer>().Endpoint(e => e.Name = "mt-bench");
                x.UsingRabbitMq((registration, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.PrefetchCount = settings.Prefetch;
                    cfg.ConfigureEndpoints(registration);
                });
            })
            .BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();
        await bus.StartAsync();
        try
        {
            var endpoint = await bus.GetSendEndpoint(new Uri("queue:mt-bench"));
            var payload = new string('x', settings.Size);
            var stopwatch = Stopwatch.StartNew();
            await Pump.RunAsync(count, settings.Concurrency, i => endpoint.Send(new BenchMessage(i, payload)));
            await countdown.WaitAsync(TimeSpan.FromMinutes(2), MassTransitName);
            return count / stopwatch.Elapsed.TotalSeconds;
        }
        finally
        {
            await bus.StopAsync();
        }
    }
}

/// <summary>Scenarios 1 and 2: the ceiling (raw client) and plain MassTransit, as a ratio of the ceiling.</summary>
public sealed class ThroughputBaselineScenario : IScenario
{
    public string Name => "baseline";
    public string Description => "raw RabbitMQ.Client publish (persistent, confirms) + consume; plain MassTransit send + consume";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var raw = await Baselines.RawThroughput(context);
        var masstransit = await Baselines.MassTransitThroughput(context);
        var peer = await context.MedianAsync(count => Peers.WolverinePeer.MeasurePlain(context, count));
        var peerName = Peers.WolverinePeer.Name;
        return
        [
            new Result("1 raw client", "publish+consume", "throughput", raw, "msg/s", Note: "the broker's ceiling on this machine"),
            new Result("2 MassTransit", "send+consume", "throughput", masstransit, "msg/s", Baselines.RawName, raw),
            new Result($"2 {peerName}", "send (inline, confirms) + plain handler", "throughput", peer, "msg/s", Baselines.RawName, raw, "peer"),
            new Result("2 MassTransit", "send+consume", "throughput", masstransit, "msg/s", $"{peerName} plain handler", peer, "like for like: one send, one consume"),
        ];
    }
}
