using System.Diagnostics;
using Integration.Benchmarks.Harness;
using Integration.Hosting;
using Integration.Hosting.Partitioning;
using Integration.Operations;
using Integration.Sagas.Postgres;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Benchmarks.Scenarios;

public sealed record SagaHit(Guid CorrelationId, int Index);

public sealed class BenchSagaState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public int Hits { get; set; }
}

/// <summary>A one-state machine: every hit increments a counter, so the saga's cost is load + update + commit.</summary>
public sealed class BenchSagaMachine : MassTransitStateMachine<BenchSagaState>
{
    public BenchSagaMachine()
    {
        InstanceState(x => x.CurrentState);
        Event(() => Hit, e => e.CorrelateById(m => m.Message.CorrelationId));
        Initially(When(Hit).Then(c => c.Saga.Hits++).TransitionTo(Active));
        During(Active, When(Hit).Then(c => c.Saga.Hits++));
    }

#pragma warning disable CA1822, CS1591
    public State Active { get; private set; } = null!;
    public Event<SagaHit> Hit { get; private set; } = null!;
#pragma warning restore CA1822, CS1591
}

public sealed class SagaBenchDbContext(DbContextOptions<SagaBenchDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.AddIntegrationSagaState<BenchSagaState>("bench_sagas", e => e.Property(s => s.CurrentState).HasMaxLength(64))   // snake_case columns
            .AddIntegrationOperations();   // saga_timeline, for the "with timeline" case
}

/// <summary>The baseline: a plain consumer doing the same one-row update the saga does, with no saga machinery.</summary>
sealed class CounterConsumer(SagaBenchDbContext db) : IConsumer<SagaHit>
{
    public async Task Consume(ConsumeContext<SagaHit> context)
    {
        var id = context.Message.CorrelationId;
        var updated = await db.Database.ExecuteSqlAsync($"UPDATE bench_sagas SET hits = hits + 1 WHERE correlation_id = {id}", context.CancellationToken);
        if (updated != 1)
            throw new InvalidOperationException($"no row {id}");
    }
}

/// <summary>
/// The second baseline: what a developer writes without a saga when the update depends on the row: read the row with EF
/// Core, change it, save it (SELECT, then the xmin-checked UPDATE): the saga's own round trips without its machinery.
/// </summary>
sealed class ReadThenWriteConsumer(SagaBenchDbContext db) : IConsumer<SagaHit>
{
    public async Task Consume(ConsumeContext<SagaHit> context)
    {
        var id = context.Message.CorrelationId;
        var row = await db.Set<BenchSagaState>().SingleOrDefaultAsync(s => s.CorrelationId == id, context.CancellationToken)
            ?? throw new InvalidOperationException($"no row {id}");
        row.Hits++;
        await db.SaveChangesAsync(context.CancellationToken);
    }
}

/// <summary>Counts a hit once its whole pipeline finished (the saga committed), whatever retries happened inside.</summary>
sealed class CommittedHits(Countdown countdown) : IConsumeMessageObserver<SagaHit>
{
    public Task PreConsume(ConsumeContext<SagaHit> context) => Task.CompletedTask;

    public Task PostConsume(ConsumeContext<SagaHit> context)
    {
        countdown.Signal();
        return Task.CompletedTask;
    }

    public Task ConsumeFault(ConsumeContext<SagaHit> context, Exception exception) => Task.CompletedTask;
}

/// <summary>
/// Scenario 6: saga events per second on the PostgreSQL repository, optimistic and pessimistic, spread over distinct
/// instances and all on one hot instance, each against a plain consumer doing the same one-row update in this run.
/// Instances exist before the run, so every case measures load + update + commit (no inserts).
/// </summary>
public sealed class SagaScenario : IScenario
{
    enum Processor { PlainConsumer, ReadThenWrite, Optimistic, Pessimistic, OptimisticWithTimeline, OptimisticPartitioned, OptimisticBatchedReads }

    /// <summary>The partitioned case: partition queues <c>bench-saga-p0..p3</c>, 8 events in flight per partition, never two of one instance.</summary>
    const int BenchPartitions = 4;
    const int BenchPartitionConcurrency = 8;
    const int BenchInstanceCache = 10_000;

    public string Name => "sagas";
    public string Description => "saga events/s (optimistic, pessimistic; distinct instances vs one hot instance) vs a plain consumer with one UPDATE";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        // Database-bound: a fraction of the message count keeps the scenario within its share of the 10-minute budget.
        var distinctCount = Math.Max(100, context.Settings.Count / 20);
        var hotCount = Math.Max(100, context.Settings.Count / 20);
        var results = new List<Result>();
        // INTEGRATION_BENCH_SAGAS_ONLY=timeline: only the "with timeline" case and its baseline (to check that row alone);
        // =distinct or =hot: only the distinct-instance or the hot-instance rows (each with its plain-consumer baseline);
        // =batched: only the plain consumer and the batched-reads saga on distinct instances.
        var only = Environment.GetEnvironmentVariable("INTEGRATION_BENCH_SAGAS_ONLY");
        var onlyTimeline = only == "timeline";
        foreach (var (label, count, instances) in new[] { ("distinct instances", distinctCount, distinctCount), ("one hot instance", hotCount, 1) })
        {
            if ((onlyTimeline || only is "distinct" or "batched") && instances == 1)
                continue;
            if (only == "hot" && instances > 1)
                continue;
            var note = $"{count} events over {instances} instance{(instances == 1 ? "" : "s")}, prefetch {context.Settings.Prefetch}";
            var plain = onlyTimeline ? 0 : await Median(context, count, instances, Processor.PlainConsumer);
            if (!onlyTimeline)
                results.Add(new Result("6 sagas", $"plain consumer, 1 UPDATE, {label}", "throughput", plain, "events/s", Note: note));
            // The saga reads before it writes, the plain consumer's UPDATE is blind: a consumer that reads then writes (EF Core,
            // no saga) shows how much of the gap is that read (distinct instances only: on one hot instance it would conflict).
            var readThenWrite = onlyTimeline || instances == 1 || only == "batched" ? 0 : await Median(context, count, instances, Processor.ReadThenWrite);
            if (readThenWrite > 0)
                results.Add(new Result("6 sagas", $"consumer, EF read + write (SELECT, UPDATE), {label}", "throughput", readThenWrite, "events/s", "plain consumer", plain, note));
            foreach (var mode in onlyTimeline || only == "batched" ? new[] { Processor.Optimistic } : new[] { Processor.Optimistic, Processor.Pessimistic })
            {
                var rate = only == "batched" ? 0 : await Median(context, count, instances, mode);
                if (rate > 0)
                    results.Add(new Result("6 sagas", $"saga {mode.ToString().ToLowerInvariant()}, {label}", "throughput", rate, "events/s", "plain consumer", plain, note));
                if (readThenWrite > 0 && rate > 0)
                    results.Add(new Result("6 sagas", $"saga {mode.ToString().ToLowerInvariant()}, {label}", "throughput", rate, "events/s", "EF read + write consumer", readThenWrite,
                        "the same two statements without the saga: the saga's own cost"));
                // BatchReads: the concurrent events' SELECTs coalesced into one per round trip (each event still its own UPDATE).
                if (mode == Processor.Optimistic && instances > 1 && !onlyTimeline)
                {
                    var batched = await Median(context, count, instances, Processor.OptimisticBatchedReads);
                    results.Add(new Result("6 sagas", $"saga optimistic, batched reads, {label}", "throughput", batched, "events/s", "plain consumer", plain,
                        $"{note}; PostgresSagaRepositoryOptions.BatchReads"));
                    if (readThenWrite > 0)
                        results.Add(new Result("6 sagas", $"saga optimistic, batched reads, {label}", "throughput", batched, "events/s", "EF read + write consumer", readThenWrite,
                            "the reads coalesced: below the floor of one read per event"));
                }

                // The operations timeline (AddSaga): one more row per event, in the saga's transaction.
                if (mode == Processor.Optimistic && instances > 1 && only != "batched")
                {
                    var timeline = await Median(context, count, instances, Processor.OptimisticWithTimeline);
                    results.Add(new Result("6 sagas", $"saga optimistic with timeline, {label}", "throughput", timeline, "events/s", "saga optimistic", rate, note));
                }
            }

            // The hot instance through the partitioned queue: its events are serialized per key (one in flight at a time),
            // so the optimistic repository never conflicts; what remains is the saga's per-event work, one after another.
            if (instances == 1 && !onlyTimeline)
            {
                var partitioned = await Median(context, count, instances, Processor.OptimisticPartitioned);
                results.Add(new Result("6 sagas", "saga optimistic, hot instance, partitioned", "throughput", partitioned, "events/s", "plain consumer", plain,
                    $"{note}; AddIntegrationPartitionedQueue, {BenchPartitions} partitions, {BenchPartitionConcurrency} in flight per partition, 1 per key, InstanceCacheSize {BenchInstanceCache}"));
            }
        }

        return results;
    }

    static async Task<double> Median(BenchContext context, int count, int instances, Processor processor)
    {
        await Measure(context, Math.Max(20, count / 10), Math.Min(instances, Math.Max(20, count / 10)), processor);
        var values = new List<double>();
        for (var i = 0; i < context.Repeat; i++)
            values.Add(await Measure(context, count, instances, processor));
        values.Sort();
        return values[values.Count / 2];
    }

    static async Task<double> Measure(BenchContext context, int count, int instances, Processor processor)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-saga");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_saga");
        // Every host gets the same warm-up before its clock (its own instances, left out of the checks): the first events of
        // a new host open its database connections and broker channels.
        var warmUp = LatencyProbe.HostWarmUp;
        var countdown = new Countdown(warmUp + count);
        using var host = await StartHost(context, broker, database, processor, countdown);

        var ids = Enumerable.Range(0, instances).Select(_ => Guid.CreateVersion7()).ToArray();
        var warm = Enumerable.Range(0, Math.Min(instances, warmUp)).Select(_ => Guid.CreateVersion7()).ToArray();
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<SagaBenchDbContext>();
            var all = ids.Concat(warm).ToArray();
            await db.Database.ExecuteSqlAsync($"INSERT INTO bench_sagas (correlation_id, current_state, hits) SELECT unnest({all}), 'Active', 0");
        }

        var bus = host.Services.GetRequiredService<IBus>();
        var endpoint = await bus.GetSendEndpoint(new Uri("queue:bench-saga"));
        // The partitioned queue is fed by publishing (its publish filter sets the partition as the routing key).
        Task Hit(Guid id, int i) => processor == Processor.OptimisticPartitioned ? bus.Publish(new SagaHit(id, i)) : endpoint.Send(new SagaHit(id, i));
        await Pump.RunAsync(warmUp, 8, i => Hit(warm[i % warm.Length], -1 - i));
        if (!await Integration.Testing.Eventually.TrueAsync(() => Task.FromResult(countdown.Count >= warmUp), TimeSpan.FromMinutes(1), TimeSpan.FromMilliseconds(10)))
            throw new TimeoutException($"{processor}: the warm-up did not complete");

        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, i => Hit(ids[i % instances], i));
        await countdown.WaitAsync(TimeSpan.FromMinutes(3), $"{processor} over {instances} instance(s)");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;

        await using (var scope = host.Services.CreateAsyncScope())
        {
            // No lost update, or the figure means nothing.
            var db = scope.ServiceProvider.GetRequiredService<SagaBenchDbContext>();
            var total = await db.Set<BenchSagaState>().Where(s => ids.Contains(s.CorrelationId)).SumAsync(s => s.Hits);
            if (total != count)
                throw new InvalidOperationException($"{processor}: {total} hits recorded for {count} events");
        }

        if (processor == Processor.OptimisticWithTimeline)
        {
            await using var scope = host.Services.CreateAsyncScope();
            var rows = await scope.ServiceProvider.GetRequiredService<SagaBenchDbContext>().Set<SagaTimelineEntry>().LongCountAsync();
            if (rows != count + warmUp)
                throw new InvalidOperationException($"{processor}: {rows} timeline rows for {count} events and {warmUp} warm-up events");
        }

        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync($"saga bench: {processor} over {instances} instance(s) (includes one SUM read at the end)", count);
        return rate;
    }

    static async Task<IHost> StartHost(BenchContext context, TestBroker broker, TestDatabase database, Processor processor, Countdown countdown)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        if (processor == Processor.OptimisticWithTimeline)
        {
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>(broker.HostSettings())   // the overview reads the broker's queues
            {
                ["Integration:MessageStore:Enabled"] = "false",
                ["Integration:Probes:Enabled"] = "false",
            });
            builder.Services.Configure<Integration.Hosting.RabbitMqOptions>(builder.Configuration.GetSection("Integration:RabbitMq"));   // AddIntegrationDefaults would
            builder.AddIntegrationOperations<SagaBenchDbContext>(operations => operations.AddSaga<BenchSagaState>("bench", s => s.CurrentState));
        }
        builder.Services.AddDbContext<SagaBenchDbContext>(o => o.UseNpgsql(database.ConnectionString), optionsLifetime: ServiceLifetime.Singleton);
        if (processor == Processor.OptimisticPartitioned)
        {
            builder.Services.AddIntegrationPartitionedQueue("bench-saga", p =>
            {
                p.Partitions = BenchPartitions;
                p.ConcurrentMessageLimit = BenchPartitionConcurrency;
                p.Key<SagaHit>(m => m.CorrelationId);
            }, (registration, e) => e.ConfigureSaga<BenchSagaState>(registration));
        }

        builder.Services.AddMassTransit(x =>
        {
            if (processor == Processor.PlainConsumer)
                x.AddConsumer<CounterConsumer>().ExcludeFromConfigureEndpoints();
            else if (processor == Processor.ReadThenWrite)
                x.AddConsumer<ReadThenWriteConsumer>().ExcludeFromConfigureEndpoints();
            else
                x.AddSagaStateMachine<BenchSagaMachine, BenchSagaState>().PostgresRepository<SagaBenchDbContext>(o =>
                {
                    o.ConcurrencyMode = processor == Processor.Pessimistic ? SagaConcurrencyMode.Pessimistic : SagaConcurrencyMode.Optimistic;
                    // One hot instance at prefetch 64 conflicts constantly; nothing may fail. Partitioned: one event of an
                    // instance at a time, so a conflict would be a bug, not contention: it fails the run.
                    o.ConflictRetryLimit = processor == Processor.OptimisticPartitioned ? 0 : 100;
                    // Partitioned: this process owns the key, so the last committed instance is kept and its SELECT skipped
                    // (the UPDATE's xmin check still guards the row).
                    if (processor == Processor.OptimisticPartitioned)
                        o.InstanceCacheSize = BenchInstanceCache;
                    o.BatchReads = processor == Processor.OptimisticBatchedReads;
                }).ExcludeFromConfigureEndpoints();
            x.UsingRabbitMq((registration, cfg) =>
            {
                broker.ConfigureHost(cfg);
                cfg.PrefetchCount = context.Settings.Prefetch;
                // On a shared database a connection can be refused now and then (max_connections): retry every case alike
                // rather than lose the event to the error queue; a saga conflict past its own retries is never retried.
                cfg.UseMessageRetry(r =>
                {
                    r.Interval(20, TimeSpan.FromMilliseconds(200));
                    r.Ignore<SagaConcurrencyException>();
                });
                if (processor == Processor.OptimisticPartitioned)
                {
                    // What AddIntegrationDefaults does with the registrations: the partition endpoints and the publish filter.
                    foreach (var configuration in registration.GetServices<IConfigureRabbitMqBus>())
                        configuration.Configure(registration, cfg);
                    return;
                }

                cfg.ReceiveEndpoint("bench-saga", e =>
                {
                    if (processor == Processor.PlainConsumer)
                        e.ConfigureConsumer<CounterConsumer>(registration);
                    else if (processor == Processor.ReadThenWrite)
                        e.ConfigureConsumer<ReadThenWriteConsumer>(registration);
                    else
                        e.ConfigureSaga<BenchSagaState>(registration);
                });
            });
        });
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        var host = builder.Build();
        host.Services.GetRequiredService<IBus>().ConnectConsumeMessageObserver(new CommittedHits(countdown));
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<SagaBenchDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
        return host;
    }
}
