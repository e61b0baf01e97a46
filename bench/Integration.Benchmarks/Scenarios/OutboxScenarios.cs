using System.Collections.Concurrent;
using System.Diagnostics;
using Integration.Benchmarks.Harness;
using Integration.Benchmarks.Peers;
using Integration.Outbox;
using Integration.Outbox.Inbox;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Benchmarks.Scenarios;

public sealed record OutboxBenchMessage(int Index);

public sealed class BenchRow
{
    public Guid Id { get; set; }
    public int Index { get; set; }
}

public sealed class BenchDbContext(DbContextOptions<BenchDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<BenchRow>().ToTable("bench_rows");
        modelBuilder.AddIntegrationOutbox();
    }
}

/// <summary>
/// Consume-side clocks: latency from the moment each message's commit (or send) returned, and from the moment the commit
/// began. A message consumed before its commit returned (the peer's commit call flushes its outbox, so its consumer can
/// run first; ours hands over inside the save) counts 0 ms from the return: dropping it would leave only the slow ones.
/// Negative indexes are the host's warm-up (counted on <see cref="WarmUp"/>, not measured).
/// </summary>
public sealed class LatencyProbe(int count, int warmUp = 0)
{
    /// <summary>Messages through every host before its clock starts, ours and the peer's alike: the first messages of a new host
    /// open its database connections and broker channels, declare its exchanges and (the peer) compile its handlers.</summary>
    public const int HostWarmUp = 50;

    /// <summary>In <see cref="_sentAt"/>: consumed before the commit returned.</summary>
    const long ConsumedFirst = -1;

    public Countdown WarmUp { get; } = new(warmUp);

    readonly long[] _startedAt = new long[count];
    readonly long[] _sentAt = new long[count];
    readonly double[] _latencyMs = new double[count];
    int _consumedFirst;

    public Countdown Done { get; } = new(count);

    /// <summary>From the return of the commit (or send).</summary>
    public LatencyRecorder Latency { get; } = new(count);

    /// <summary>From the start of the commit (<see cref="Starting"/>): what the caller waits in all, the commit included.</summary>
    public LatencyRecorder FromStart { get; } = new(count);

    /// <summary>Messages consumed before their commit returned (counted 0 ms in <see cref="Latency"/>).</summary>
    public int ConsumedBeforeReturn => Volatile.Read(ref _consumedFirst);

    /// <summary>The commit of <paramref name="index"/> begins.</summary>
    public void Starting(int index)
    {
        if (index >= 0)
            Volatile.Write(ref _startedAt[index], Stopwatch.GetTimestamp());
    }

    /// <summary>The commit (or send) of <paramref name="index"/> returned.</summary>
    public void Sent(int index) => Interlocked.CompareExchange(ref _sentAt[index], Stopwatch.GetTimestamp(), 0);

    public void Received(int index)
    {
        if (index < 0)
        {
            WarmUp.Signal();
            return;
        }

        var sent = Interlocked.Exchange(ref _sentAt[index], ConsumedFirst);
        var started = Volatile.Read(ref _startedAt[index]);
        if (sent > 0)
        {
            var elapsed = Stopwatch.GetElapsedTime(sent);
            Latency.Record(elapsed);
            _latencyMs[index] = elapsed.TotalMilliseconds;
        }
        else if (started != 0)
        {
            Latency.Record(TimeSpan.Zero);
            Interlocked.Increment(ref _consumedFirst);
        }

        if (started != 0)
            FromStart.Record(Stopwatch.GetElapsedTime(started));
        Done.Signal();
    }

    /// <summary>The slowest messages (index, ms): where in the run the tail happened.</summary>
    public IEnumerable<(int Index, double Ms)> Slowest(int n) =>
        _latencyMs.Select((ms, i) => (i, ms)).OrderByDescending(x => x.ms).Take(n);
}

sealed class ProbeConsumer(LatencyProbe probe) : IConsumer<OutboxBenchMessage>
{
    public Task Consume(ConsumeContext<OutboxBenchMessage> context)
    {
        probe.Received(context.Message.Index);
        return Task.CompletedTask;
    }
}

sealed class WritingConsumer(BenchDbContext db, LatencyProbe probe, InboxSwitch inbox) : IConsumer<OutboxBenchMessage>
{
    public async Task Consume(ConsumeContext<OutboxBenchMessage> context)
    {
        db.Add(new BenchRow { Id = Guid.NewGuid(), Index = context.Message.Index });
        if (!inbox.On)
            await db.SaveChangesAsync(context.CancellationToken);   // with the inbox, the inbox saves in its transaction
        probe.Received(context.Message.Index);
    }
}

sealed record InboxSwitch(bool On);

/// <summary>Scenarios 4 and 5: the outbox (commit-to-consume latency, throughput) and the inbox (cost of idempotency).</summary>
public sealed class OutboxScenario : IScenario
{
    public string Name => "outbox";
    public string Description => "outbox: commit-to-consume latency and throughput vs commit + direct publish with confirms (one business row and one message per transaction)";

    /// <summary>Commits per second for the latency runs: well below this machine's commit ceiling, as in normal operation.</summary>
    const int PacedRate = 100;

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        switch (Environment.GetEnvironmentVariable("INTEGRATION_BENCH_OUTBOX_ONLY"))
        {
            case "latency":
                return await LatencyOnly(context);
            case "ours":
                // Our saturated case alone (for a trace of this process: dotnet-trace collect -- dotnet Integration.Benchmarks.dll outbox).
                var alone = await context.MedianAsync(async count => (await Measure(context, count, outbox: true, paced: false)).Rate);
                return [new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", alone, "msg/s", Note: "saturated: 64 writers; DirectDelivery on; alone")];
            case "tune":
                // INTEGRATION_BENCH_OUTBOX_TUNE="limit,concurrency;limit,concurrency": our saturated case with each
                // DirectDeliveryLimit and DeliveryConcurrency, in turns (ratios against the first).
                var variants = (Environment.GetEnvironmentVariable("INTEGRATION_BENCH_OUTBOX_TUNE")
                        ?? throw new InvalidOperationException("INTEGRATION_BENCH_OUTBOX_ONLY=tune needs INTEGRATION_BENCH_OUTBOX_TUNE, e.g. \"2000,100;200,256\""))
                    .Split(';').Select(v => v.Split(',').Select(int.Parse).ToArray()).ToArray();
                var tuned = await context.InTurnsAsync([.. variants.Select(v => (Func<int, Task<double>>)(async count =>
                    (await Measure(context, count, outbox: true, paced: false, o => { o.DirectDeliveryLimit = v[0]; o.DeliveryConcurrency = v[1]; })).Rate))]);
                return [.. variants.Select((v, i) => new Result("4 outbox", $"ours limit {v[0]} concurrency {v[1]}", "throughput", tuned[i], "msg/s", "first", tuned[0]))];
            case "rowcost":
                return await RowCostExperiment.RunAsync(context);
            case "direct":
                // The direct-publish baseline alone (for a trace to set beside ours).
                var baseline = await context.MedianAsync(async count => (await Measure(context, count, outbox: false, paced: false)).Rate);
                return [new Result("4 outbox", "commit, then direct publish (confirms)", "throughput", baseline, "msg/s", Note: "saturated: 64 writers; alone")];
        }
        // The saturated cases in turns (direct publish, ours, the peer, the floor of any outbox): their ratios are the point.
        var saturated = await context.InTurnsAsync(
            async count => (await Measure(context, count, outbox: false, paced: false)).Rate,
            async count => (await Measure(context, count, outbox: true, paced: false)).Rate,
            async count => (await WolverinePeer.MeasureOutbox(context, count, paced: false, PacedRate)).Rate,
            count => RowCostExperiment.Floor(context, count));
        var (direct, viaOutbox, peer, floor) = (saturated[0], saturated[1], saturated[2], saturated[3]);
        var floorCase = "floor: commit + the outbox row appended raw, direct publish";
        Result[] floorRows =
        [
            new Result("4 outbox", floorCase, "throughput", floor, "msg/s", "commit + direct publish", direct,
                "saturated: 64 writers; the row at no framework cost (no change tracking, relay or delete): no outbox can be faster"),
            new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", viaOutbox, "msg/s", "floor", floor, "ours vs the floor, same run"),
            new Result("4 outbox", floorCase, "throughput", floor, "msg/s", $"{WolverinePeer.Name} outbox", peer,
                "the most any one-row-per-message outbox could lead the peer by on this machine"),
        ];
        if (Environment.GetEnvironmentVariable("INTEGRATION_BENCH_OUTBOX_ONLY") == "saturated")
        {
            // The saturated cases alone (no paced runs): for comparing a change quickly.
            return
            [
                new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", viaOutbox, "msg/s", "commit + direct publish", direct, "saturated: 64 writers; DirectDelivery on, RetentionPeriod 0"),
                new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", viaOutbox, "msg/s", $"{WolverinePeer.Name} outbox", peer, "ours vs peer, same run"),
                .. floorRows,
            ];
        }

        var pacedCount = Math.Min(context.Settings.Count, PacedRate * 10);
        var (_, directLatency, directProbe) = await Measure(context, pacedCount, outbox: false, paced: true);
        var (_, outboxLatency, outboxProbe) = await Measure(context, pacedCount, outbox: true, paced: true);
        foreach (var (name, probe) in new[] { ("direct", directProbe), ("outbox", outboxProbe) })
            Console.Error.WriteLine($"[bench] {name} at {PacedRate}/s, slowest: " + string.Join(", ", probe.Slowest(12).Select(x => $"{x.Ms:0.0} ms @ {x.Index / (double)PacedRate:0.00} s")));
        var peerProbe = (await WolverinePeer.MeasureOutbox(context, pacedCount, paced: true, PacedRate)).Probe;
        var peerLatency = peerProbe.Latency;
        foreach (var (name, probe) in new[] { ("direct", directProbe), ("outbox", outboxProbe), ("peer", peerProbe) })
            Console.Error.WriteLine($"[bench] {name} at {PacedRate}/s: {probe.ConsumedBeforeReturn} of {pacedCount} consumed before their commit returned (0 ms from the return); from the return p50 {probe.Latency.PercentileMs(50):0.00} ms, p99 {probe.Latency.PercentileMs(99):0.00} ms");
        var note = $"{pacedCount} commits at {PacedRate}/s";
        var ours = note + "; DirectDelivery on, RetentionPeriod 0";
        var peerName = WolverinePeer.Name;
        Console.Error.WriteLine($"[bench] peer settings: {WolverinePeer.Settings(context.Settings)}");
        return
        [
            new Result("4 outbox", "commit, then direct publish (confirms)", "throughput", direct, "msg/s", Note: "saturated: 64 writers"),
            new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", viaOutbox, "msg/s", "commit + direct publish", direct, "saturated: 64 writers; DirectDelivery on, RetentionPeriod 0"),
            new Result("4 outbox", "commit + direct publish", "commit-to-consume p50", directLatency.PercentileMs(50), "ms", Note: note),
            new Result("4 outbox", "commit + direct publish", "commit-to-consume p99", directLatency.PercentileMs(99), "ms", Note: note),
            new Result("4 outbox", "outbox", "commit-to-consume p50", outboxLatency.PercentileMs(50), "ms", "direct p50", directLatency.PercentileMs(50), ours),
            new Result("4 outbox", "outbox", "commit-to-consume p95", outboxLatency.PercentileMs(95), "ms", "direct p95", directLatency.PercentileMs(95), ours),
            new Result("4 outbox", "outbox", "commit-to-consume p99", outboxLatency.PercentileMs(99), "ms", "direct p99", directLatency.PercentileMs(99), ours),
            new Result("4 outbox", $"{peerName} durable outbox (EF Core, confirms)", "throughput", peer, "msg/s", "commit + direct publish", direct, "saturated: 64 writers; peer"),
            new Result("4 outbox", "commit with outbox, relay (confirms)", "throughput", viaOutbox, "msg/s", $"{peerName} outbox", peer, "ours vs peer, same run; DirectDelivery on, RetentionPeriod 0"),
            .. floorRows,
            // The peer's commit call flushes its outbox before it returns: almost every message is consumed before that, so
            // its clock from the return reads 0 (printed above). Its latency is compared from before the commit, where each
            // side is charged its whole wait (the commit included).
            new Result("4 outbox", "commit + direct publish", "start-of-commit-to-consume p50", directProbe.FromStart.PercentileMs(50), "ms", Note: note + "; from before the commit"),
            new Result("4 outbox", "commit + direct publish", "start-of-commit-to-consume p99", directProbe.FromStart.PercentileMs(99), "ms", Note: note + "; from before the commit"),
            new Result("4 outbox", "outbox", "start-of-commit-to-consume p50", outboxProbe.FromStart.PercentileMs(50), "ms", "direct p50", directProbe.FromStart.PercentileMs(50), ours + "; from before the commit"),
            new Result("4 outbox", "outbox", "start-of-commit-to-consume p99", outboxProbe.FromStart.PercentileMs(99), "ms", "direct p99", directProbe.FromStart.PercentileMs(99), ours + "; from before the commit"),
            new Result("4 outbox", $"{peerName} durable outbox", "start-of-commit-to-consume p50", peerProbe.FromStart.PercentileMs(50), "ms", "direct p50", directProbe.FromStart.PercentileMs(50), note + "; from before the commit; peer"),
            new Result("4 outbox", $"{peerName} durable outbox", "start-of-commit-to-consume p95", peerProbe.FromStart.PercentileMs(95), "ms", "direct p95", directProbe.FromStart.PercentileMs(95), note + "; from before the commit; peer"),
            new Result("4 outbox", $"{peerName} durable outbox", "start-of-commit-to-consume p99", peerProbe.FromStart.PercentileMs(99), "ms", "direct p99", directProbe.FromStart.PercentileMs(99), note + "; from before the commit; peer"),
            new Result("4 outbox", "outbox", "start-of-commit-to-consume p50", outboxProbe.FromStart.PercentileMs(50), "ms", $"{peerName} p50", peerProbe.FromStart.PercentileMs(50), ours + "; from before the commit; ours vs peer"),
            new Result("4 outbox", "outbox", "start-of-commit-to-consume p99", outboxProbe.FromStart.PercentileMs(99), "ms", $"{peerName} p99", peerProbe.FromStart.PercentileMs(99), ours + "; from before the commit; ours vs peer"),
        ];
    }

    /// <summary>INTEGRATION_BENCH_OUTBOX_ONLY=latency: the paced runs alone, twice each, with the slowest messages and when they happened.</summary>
    static async Task<IReadOnlyList<Result>> LatencyOnly(BenchContext context)
    {
        var count = Math.Min(context.Settings.Count, PacedRate * 10);
        var results = new List<Result>();
        for (var round = 0; round < 2; round++)
        {
            var direct = await Measure(context, count, outbox: false, paced: true);
            var viaOutbox = await Measure(context, count, outbox: true, paced: true);
            foreach (var (name, probe) in new[] { ("direct", direct.Probe), ("outbox", viaOutbox.Probe) })
                Console.Error.WriteLine($"[bench] {name} slowest: " + string.Join(", ", probe.Slowest(12).Select(x => $"{x.Ms:0.0} ms @ {x.Index / (double)PacedRate:0.00} s")));
            results.Add(new Result("4 outbox", "commit + direct publish", "commit-to-consume p99", direct.Latency.PercentileMs(99), "ms", Note: $"round {round}"));
            results.Add(new Result("4 outbox", "outbox", "commit-to-consume p50", viaOutbox.Latency.PercentileMs(50), "ms", "direct p50", direct.Latency.PercentileMs(50), $"round {round}"));
            results.Add(new Result("4 outbox", "outbox", "commit-to-consume p99", viaOutbox.Latency.PercentileMs(99), "ms", "direct p99", direct.Latency.PercentileMs(99), $"round {round}"));
        }

        return results;
    }

    static async Task<(double Rate, LatencyRecorder Latency, LatencyProbe Probe)> Measure(BenchContext context, int count, bool outbox, bool paced,
        Action<OutboxOptions>? tune = null)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-outbox");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_outbox");
        var probe = new LatencyProbe(count, LatencyProbe.HostWarmUp);
        using var host = await OutboxBench.StartHost(context, broker, database, probe, consumer: typeof(ProbeConsumer), inbox: false, tune);
        var bus = host.Services.GetRequiredService<IBus>();

        async Task Commit(int i)
        {
            // The same business write in both cases; the only difference is how the message leaves.
            probe.Starting(i);
            await using var scope = host.Services.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<BenchDbContext>();
            db.Add(new BenchRow { Id = Guid.NewGuid(), Index = i });
            if (outbox)
            {
                scope.ServiceProvider.GetRequiredService<IOutbox>().Publish(new OutboxBenchMessage(i));
                await db.SaveChangesAsync();
                if (i >= 0)
                    probe.Sent(i);
            }
            else
            {
                await db.SaveChangesAsync();
                if (i >= 0)
                    probe.Sent(i);
                await bus.Publish(new OutboxBenchMessage(i));
            }
        }

        await Pump.RunAsync(LatencyProbe.HostWarmUp, 8, i => Commit(-1 - i));
        await probe.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), $"{(outbox ? "outbox" : "direct publish")} warm-up");

        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        var interval = TimeSpan.FromSeconds(1.0 / PacedRate);
        await Pump.RunAsync(count, paced ? 8 : context.Settings.Concurrency, async i =>
        {
            if (paced && stopwatch.Elapsed < interval * i)
                await Task.Delay(interval * i - stopwatch.Elapsed);
            await Commit(i);
        });
        Console.Error.WriteLine($"[bench] {(outbox ? "outbox" : "commit + publish")}: {count} commits in {stopwatch.Elapsed.TotalSeconds:0.00} s; {probe.Done.Count} consumed by then");
        await probe.Done.WaitAsync(TimeSpan.FromMinutes(3), outbox ? "outbox" : "direct publish");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        if (profile is not null)
            await Task.Delay(TimeSpan.FromSeconds(1)); // the relay marks its last batch
        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync(outbox ? $"our outbox{(paced ? " (paced)" : "")}" : $"commit + direct publish{(paced ? " (paced)" : "")}", count);
        return (rate, probe.Latency, probe);
    }
}

/// <summary>Scenario 5: a consumer that writes one row, with and without the inbox.</summary>
public sealed class InboxScenario : IScenario
{
    public string Name => "inbox";
    public string Description => "inbox cost: consumer with one EF write, with and without the inbox";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var medians = await context.InTurnsAsync(
            count => Measure(context, count, inbox: false),
            count => Measure(context, count, inbox: true),
            count => WolverinePeer.MeasureInbox(context, count));
        var (plain, withInbox, peer) = (medians[0], medians[1], medians[2]);
        var peerName = WolverinePeer.Name;
        Console.Error.WriteLine($"[bench] peer settings: {WolverinePeer.Settings(context.Settings)}");
        return
        [
            new Result("5 inbox", "consumer + 1 EF write", "throughput", plain, "msg/s"),
            new Result("5 inbox", "consumer + 1 EF write + inbox", "throughput", withInbox, "msg/s", "without inbox", plain),
            new Result("5 inbox", $"{peerName} durable inbox + 1 EF write", "throughput", peer, "msg/s", "without inbox", plain, "peer"),
            new Result("5 inbox", "consumer + 1 EF write + inbox", "throughput", withInbox, "msg/s", $"{peerName} inbox", peer, "ours vs peer, same run"),
        ];
    }

    static async Task<double> Measure(BenchContext context, int count, bool inbox)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-inbox");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_inbox");
        var probe = new LatencyProbe(count, LatencyProbe.HostWarmUp);
        using var host = await OutboxBench.StartHost(context, broker, database, probe, consumer: typeof(WritingConsumer), inbox: inbox);
        var bus = host.Services.GetRequiredService<IBus>();
        await Pump.RunAsync(LatencyProbe.HostWarmUp, 8, i => bus.Publish(new OutboxBenchMessage(-1 - i)));
        await probe.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), $"{(inbox ? "with inbox" : "without inbox")} warm-up");
        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, i => bus.Publish(new OutboxBenchMessage(i)));
        await probe.Done.WaitAsync(TimeSpan.FromMinutes(3), inbox ? "with inbox" : "without inbox");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        if (profile is not null)
            await Task.Delay(TimeSpan.FromSeconds(1)); // the last commits
        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync(inbox ? "our inbox + 1 EF write" : "consumer + 1 EF write", count);
        return rate;
    }
}

static class OutboxBench
{
    public static async Task<IHost> StartHost(BenchContext context, TestBroker broker, TestDatabase database, LatencyProbe probe, Type consumer, bool inbox,
        Action<OutboxOptions>? tune = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(probe);
        builder.Services.AddSingleton(new InboxSwitch(inbox));
        // Options built once (the peer's AddDbContextWithWolverineIntegration does the same): not per scope.
        builder.Services.AddDbContext<BenchDbContext>(o => o.UseNpgsql(database.ConnectionString), optionsLifetime: ServiceLifetime.Singleton);
        // Direct delivery (this process's commits sent from memory, no claim): opt-in, measured here (docs/outbox.md). No
        // retention: each delivered row is deleted by its mark, as the peer deletes each envelope it sent. (With the default
        // 24 h the rows are deleted by the cleanup a day later: outside any bench window, so not paid in the figures.)
        builder.Services.AddIntegrationOutbox<BenchDbContext>(o =>
        {
            o.DirectDelivery = true;
            o.RetentionPeriod = TimeSpan.Zero;
            tune?.Invoke(o);
        });
        builder.Services.AddMassTransit(x =>
        {
            x.AddConsumer(consumer).ExcludeFromConfigureEndpoints();
            x.UsingRabbitMq((registration, cfg) =>
            {
                broker.ConfigureHost(cfg);
                cfg.PrefetchCount = context.Settings.Prefetch;
                cfg.ReceiveEndpoint("bench-consumer", e =>
                {
                    if (inbox)
                        e.UseIntegrationInbox(registration);
                    e.ConfigureConsumer(registration, consumer);
                });
            });
        });
        // Publishing before the consumer's queue is bound would be dropped by the broker: start only when ready.
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        var host = builder.Build();
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<BenchDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
        return host;
    }
}
