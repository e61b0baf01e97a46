using System.Diagnostics;
using System.Text;
using Integration.Benchmarks.Harness;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Benchmarks.Scenarios;

public sealed record BenchPing(int Index);

public sealed record BenchPong(int Index);

/// <summary>Scenario 7: sequential request/response latency, MassTransit request client vs a raw RabbitMQ.Client RPC loop (direct reply-to).</summary>
public sealed class RequestResponseScenario : IScenario
{
    public string Name => "rpc";
    public string Description => "request/response latency: MassTransit IRequestClient vs raw RabbitMQ.Client RPC (direct reply-to), one request at a time";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var requests = context.Settings.RequestCount;
        var raw = await RawRpc(context, requests);
        var masstransit = await MassTransitRpc(context, requests);
        return
        [
            new Result("7 request/response", "raw RPC", "p50", raw.PercentileMs(50), "ms"),
            new Result("7 request/response", "raw RPC", "p99", raw.PercentileMs(99), "ms"),
            new Result("7 request/response", "MassTransit request client", "p50", masstransit.PercentileMs(50), "ms", "raw RPC p50", raw.PercentileMs(50)),
            new Result("7 request/response", "MassTransit request client", "p99", masstransit.PercentileMs(99), "ms", "raw RPC p99", raw.PercentileMs(99)),
        ];
    }

    static async Task<LatencyRecorder> RawRpc(BenchContext context, int requests)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-rpc");
        var factory = new ConnectionFactory { Uri = broker.AmqpUri };
        await using var serverConnection = await factory.CreateConnectionAsync("bench-rpc-server");
        await using var server = await serverConnection.CreateChannelAsync();
        await server.QueueDeclareAsync("rpc-bench", durable: false, exclusive: false, autoDelete: true);
        var serverConsumer = new AsyncEventingBasicConsumer(server);
        serverConsumer.ReceivedAsync += async (_, request) =>
        {
            var reply = new BasicProperties { CorrelationId = request.BasicProperties.CorrelationId };
            await server.BasicPublishAsync("", request.BasicProperties.ReplyTo!, mandatory: false, reply, request.Body);
            await server.BasicAckAsync(request.DeliveryTag, multiple: false);
        };
        await server.BasicConsumeAsync("rpc-bench", autoAck: false, serverConsumer);

        await using var clientConnection = await factory.CreateConnectionAsync("bench-rpc-client");
        await using var client = await clientConnection.CreateChannelAsync();
        TaskCompletionSource<string>? pending = null;
        var clientConsumer = new AsyncEventingBasicConsumer(client);
        clientConsumer.ReceivedAsync += (_, reply) =>
        {
            pending?.TrySetResult(reply.BasicProperties.CorrelationId ?? "");
            return Task.CompletedTask;
        };
        await client.BasicConsumeAsync("amq.rabbitmq.reply-to", autoAck: true, clientConsumer);

        var latencies = new LatencyRecorder(requests);
        for (var i = -requests / 10; i < requests; i++)
        {
            var correlation = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            pending = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            var started = Stopwatch.GetTimestamp();
            var properties = new BasicProperties { CorrelationId = correlation, ReplyTo = "amq.rabbitmq.reply-to" };
            await client.BasicPublishAsync("", "rpc-bench", mandatory: false, properties, Encoding.UTF8.GetBytes(correlation));
            var answered = await pending.Task.WaitAsync(TimeSpan.FromSeconds(10));
            if (answered != correlation)
                throw new InvalidOperationException($"raw RPC: reply {answered} to request {correlation}");
            if (i >= 0)
                latencies.Record(Stopwatch.GetElapsedTime(started));
        }

        return latencies;
    }

    sealed class PingConsumer : IConsumer<BenchPing>
    {
        public Task Consume(ConsumeContext<BenchPing> context) => context.RespondAsync(new BenchPong(context.Message.Index));
    }

    static async Task<LatencyRecorder> MassTransitRpc(BenchContext context, int requests)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-rpc-mt");
        await using var provider = new ServiceCollection()
            .AddMassTransit(x =>
            {
                x.AddConsumer<PingConsumer>().Endpoint(e => e.Name = "ping-bench");
                x.AddRequestClient<BenchPing>(new Uri("queue:ping-bench"));
                x.UsingRabbitMq((registration, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.ConfigureEndpoints(registration);
                });
            })
            .BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();
        await bus.StartAsync();
        try
        {
            using var scope = provider.CreateScope();
            var client = scope.ServiceProvider.GetRequiredService<IRequestClient<BenchPing>>();
            var latencies = new LatencyRecorder(requests);
            for (var i = -requests / 10; i < requests; i++)
            {
                var started = Stopwatch.GetTimestamp();
                var response = await client.GetResponse<BenchPong>(new BenchPing(i));
                if (response.Message.Index != i)
                    throw new InvalidOperationException($"MassTransit RPC: reply {response.Message.Index} to request {i}");
                if (i >= 0)
                    latencies.Record(Stopwatch.GetElapsedTime(started));
            }

            return latencies;
        }
        finally
        {
            await bus.StopAsync();
        }
    }
}
