using System.Diagnostics;
using Integration.Benchmarks.Harness;
using Integration.Outbox;
using Integration.Outbox.Batching;
using Integration.Outbox.Inbox;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Benchmarks.Scenarios;

/// <summary>One row per message, no save: the inbox (one at a time) or the batch step (batched) saves and commits.</summary>
sealed class RowConsumer(BenchDbContext db) : IConsumer<OutboxBenchMessage>
{
    public Task Consume(ConsumeContext<OutboxBenchMessage> context)
    {
        db.Add(new BenchRow { Id = Guid.NewGuid(), Index = context.Message.Index });
        return Task.CompletedTask;
    }
}

sealed class RowBatchHandler(BenchDbContext db) : IBatchHandler<OutboxBenchMessage>
{
    public Task HandleAsync(IReadOnlyList<OutboxBenchMessage> messages, CancellationToken cancellationToken)
    {
        foreach (var message in messages)
            db.Add(new BenchRow { Id = Guid.NewGuid(), Index = message.Index });
        return Task.CompletedTask;
    }
}

/// <summary>Counts a message once its consume call returned, i.e. after the transaction that applied it committed.</summary>
sealed class CommittedFilter(LatencyProbe probe) : IFilter<ConsumeContext>
{
    public async Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
    {
        await next.Send(context);
        if (context.TryGetMessage<OutboxBenchMessage>(out var consumed))
            probe.Received(consumed.Message.Index);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("committed");
}

/// <summary>Scenario 8: idempotent updates (one row and one inbox record each) applied in batches vs one transaction per message.</summary>
public sealed class BatchingScenario : IScenario
{
    const int MessageLimit = 100;

    public string Name => "batching";
    public string Description => $"batching: idempotent updates (1 EF row + inbox record each), batches of up to {MessageLimit} in one transaction vs one transaction per message";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var single = await context.MedianAsync(count => Measure(context, count, batched: false));
        var batched = await context.MedianAsync(count => Measure(context, count, batched: true));
        return
        [
            new Result("8 batching", "one at a time: consumer + 1 EF write + inbox", "throughput", single, "msg/s", Note: "one transaction per message"),
            new Result("8 batching", $"batched: AddIntegrationBatch (MessageLimit {MessageLimit}, TimeLimit 100 ms)", "throughput", batched, "msg/s",
                "one at a time", single, "counted after each message's commit"),
        ];
    }

    static async Task<double> Measure(BenchContext context, int count, bool batched)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-batching");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_batching");
        var probe = new LatencyProbe(count);
        using var host = await StartHost(context, broker, database, probe, batched);
        var endpoint = await host.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri("queue:bench-updates"));
        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, i => endpoint.Send(new OutboxBenchMessage(i)));
        await probe.Done.WaitAsync(TimeSpan.FromMinutes(3), batched ? "batched" : "one at a time");
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        Console.Error.WriteLine($"[bench] batching {(batched ? "batched" : "one at a time")}: {count} in {stopwatch.Elapsed.TotalSeconds:0.00} s");
        await host.StopAsync();
        return rate;
    }

    /// <summary>The same in both cases: a shared database may refuse a connection now and then (too many clients).</summary>
    static void Retry(IRetryConfigurator retry) => retry.Interval(10, TimeSpan.FromMilliseconds(200));

    static async Task<IHost> StartHost(BenchContext context, TestBroker broker, TestDatabase database, LatencyProbe probe, bool batched)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(probe);
        builder.Services.AddDbContext<BenchDbContext>(o => o.UseNpgsql(database.ConnectionString), optionsLifetime: ServiceLifetime.Singleton);
        builder.Services.AddIntegrationOutbox<BenchDbContext>();
        builder.Services.AddMassTransit(x =>
        {
            if (batched)
            {
                x.AddIntegrationBatch<OutboxBenchMessage, RowBatchHandler>("bench-updates", o => o.MessageLimit = MessageLimit,
                    endpoint =>
                    {
                        endpoint.UseMessageRetry(Retry);
                        endpoint.UseFilter(new CommittedFilter(probe));
                    });
            }
            else
            {
                x.AddConsumer<RowConsumer>().ExcludeFromConfigureEndpoints();
            }

            x.UsingRabbitMq((registration, cfg) =>
            {
                broker.ConfigureHost(cfg);
                cfg.PrefetchCount = context.Settings.Prefetch;
                if (!batched)
                {
                    cfg.ReceiveEndpoint("bench-updates", e =>
                    {
                        e.UseMessageRetry(Retry);
                        e.UseFilter(new CommittedFilter(probe));
                        e.UseIntegrationInbox(registration);
                        e.ConfigureConsumer<RowConsumer>(registration);
                    });
                }

                cfg.ConfigureEndpoints(registration);
            });
        });
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        var host = builder.Build();
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<BenchDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
        return host;
    }
}
