using System.Diagnostics;
using System.Reflection;
using Integration.Benchmarks.Harness;
using Integration.Benchmarks.Scenarios;
using JasperFx.Resources;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Wolverine;
using Wolverine.EntityFrameworkCore;
using Wolverine.Postgresql;
using Wolverine.RabbitMQ;

namespace Integration.Benchmarks.Peers;

/// <summary>Messages of the Wolverine cases (their own types: each case's host handles only its own).</summary>
public sealed record PeerOutboxMessage(int Index);

public sealed record PeerInboxMessage(int Index);

public sealed record PeerPlainMessage(int Index, string Payload);

/// <summary>The business table of the Wolverine cases: the same one row per commit as ours.</summary>
public sealed class PeerDbContext(DbContextOptions<PeerDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<BenchRow>().ToTable("bench_rows");
}

/// <summary>What the handlers report to: the measured probe, and the in-host warm-up (negative indexes).</summary>
public sealed class PeerState(LatencyProbe probe, int warmUp)
{
    public LatencyProbe Probe { get; } = probe;
    public Countdown WarmUp { get; } = new(warmUp);

    public void Received(int index)
    {
        if (index < 0)
            WarmUp.Signal();
        else
            Probe.Received(index);
    }
}

public static class PeerOutboxHandler
{
    public static void Handle(PeerOutboxMessage message, PeerState state) => state.Received(message.Index);
}

public static class PeerInboxHandler
{
    // The same one-row write as our WritingConsumer; AutoApplyTransactions saves it with the inbox's envelope.
    public static void Handle(PeerInboxMessage message, PeerDbContext db, PeerState state)
    {
        db.Add(new BenchRow { Id = Guid.NewGuid(), Index = message.Index });
        state.Received(message.Index);
    }
}

public static class PeerPlainHandler
{
    public static void Handle(PeerPlainMessage message, PeerState state) => state.Received(message.Index);
}

/// <summary>
/// Wolverine as the peer: the same broker (a virtual host of its own per run), database server (a database of its own
/// per run), message count, size, writers and prefetch as our cases, configured the way its documentation recommends.
/// </summary>
public static class WolverinePeer
{
    public const string Schema = "wolverine";

    /// <summary>Messages through each host before its clock starts, as for ours (Wolverine also compiles its handler code on first use in every new host).</summary>
    const int WarmUp = LatencyProbe.HostWarmUp;

    public static string Name { get; } = "Wolverine " + Version(typeof(IMessageBus));

    public static string Settings(BenchSettings settings) =>
        $"{Name}: Durability.Mode=Solo, PostgreSQL message store (schema '{Schema}'), AddDbContextWithWolverineIntegration (envelopes in EF's batch), " +
        $"AutoApplyTransactions, RabbitMQ publisher confirms on (+tracking), prefetch {settings.Prefetch}, MaximumParallelMessages {settings.Prefetch}, " +
        "publishing through a fanout exchange bound to the listener's queue (outbox case: buffered listener, no inbox, as ours; inbox case: inline sends, as ours), " +
        $"{WarmUp} messages per host before its clock (runtime code generation)";

    enum Case { Outbox, Inbox, Plain }

    /// <summary>Durable outbox: one row + one message per <c>SaveChangesAndFlushMessagesAsync</c>, published through an exchange bound to the listener's queue, so the listener stays buffered (no inbox), as ours.</summary>
    public static async Task<(double Rate, LatencyProbe Probe)> MeasureOutbox(BenchContext context, int count, bool paced, int pacedRate)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-wolverine-outbox");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_wolverine_outbox");
        var state = new PeerState(new LatencyProbe(count), WarmUp);
        using var host = await StartHost(context, broker, database, state, Case.Outbox);

        async Task Commit(int index)
        {
            state.Probe.Starting(index);
            await using var scope = host.Services.CreateAsyncScope();
            var outbox = scope.ServiceProvider.GetRequiredService<IDbContextOutbox<PeerDbContext>>();
            outbox.DbContext.Add(new BenchRow { Id = Guid.NewGuid(), Index = index });
            await outbox.PublishAsync(new PeerOutboxMessage(index));
            await outbox.SaveChangesAndFlushMessagesAsync();
            if (index >= 0)
                state.Probe.Sent(index);
        }

        await Pump.RunAsync(WarmUp, 8, i => Commit(-1 - i));
        await state.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), $"{Name} outbox warm-up");

        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        var interval = TimeSpan.FromSeconds(1.0 / pacedRate);
        await Pump.RunAsync(count, paced ? 8 : context.Settings.Concurrency, async i =>
        {
            if (paced && stopwatch.Elapsed < interval * i)
                await Task.Delay(interval * i - stopwatch.Elapsed);
            await Commit(i);
        });
        Console.Error.WriteLine($"[bench] {Name} outbox: {count} commits in {stopwatch.Elapsed.TotalSeconds:0.00} s; {state.Probe.Done.Count} consumed by then");
        await state.Probe.Done.WaitAsync(TimeSpan.FromMinutes(3), $"{Name} outbox");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        if (profile is not null)
            await Task.Delay(TimeSpan.FromSeconds(1)); // it deletes sent envelopes after the send
        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync($"{Name} outbox{(paced ? " (paced)" : "")}", count);
        return (rate, state.Probe);
    }

    /// <summary>Durable inbox + one EF write per message; sent (confirms, inline) by 64 concurrent senders as ours.</summary>
    public static async Task<double> MeasureInbox(BenchContext context, int count)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-wolverine-inbox");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_wolverine_inbox");
        var state = new PeerState(new LatencyProbe(count), WarmUp);
        using var host = await StartHost(context, broker, database, state, Case.Inbox);
        var bus = host.Services.GetRequiredService<IMessageBus>();
        await Pump.RunAsync(WarmUp, 8, async i => await bus.PublishAsync(new PeerInboxMessage(-1 - i)));
        await state.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), $"{Name} inbox warm-up");

        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, async i => await bus.PublishAsync(new PeerInboxMessage(i)));
        await state.Probe.Done.WaitAsync(TimeSpan.FromMinutes(3), $"{Name} inbox");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        if (profile is not null)
            await Task.Delay(TimeSpan.FromSeconds(1));
        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync($"{Name} inbox + 1 EF write", count);
        return rate;
    }

    /// <summary>Plain handler: send with confirms (inline) + consume on one queue, no database: against plain MassTransit.</summary>
    public static async Task<double> MeasurePlain(BenchContext context, int count)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-wolverine-plain");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_wolverine_plain");
        var state = new PeerState(new LatencyProbe(count), WarmUp);
        using var host = await StartHost(context, broker, database, state, Case.Plain);
        var bus = host.Services.GetRequiredService<IMessageBus>();
        var payload = new string('x', context.Settings.Size);
        await Pump.RunAsync(WarmUp, 8, async i => await bus.PublishAsync(new PeerPlainMessage(-1 - i, payload)));
        await state.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), $"{Name} plain warm-up");

        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, async i => await bus.PublishAsync(new PeerPlainMessage(i, payload)));
        await state.Probe.Done.WaitAsync(TimeSpan.FromMinutes(3), $"{Name} plain");
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        await host.StopAsync();
        return rate;
    }

    static async Task<IHost> StartHost(BenchContext context, Integration.Testing.TestBroker broker, Integration.Testing.TestDatabase database, PeerState state, Case which)
    {
        var prefetch = (ushort)context.Settings.Prefetch;
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(state);
        builder.UseWolverine(opts =>
        {
            opts.UseRuntimeCompilation();
            opts.ApplicationAssembly = typeof(WolverinePeer).Assembly;
            opts.Durability.Mode = DurabilityMode.Solo;
            opts.Discovery.DisableConventionalDiscovery();
            opts.PersistMessagesWithPostgresql(database.ConnectionString, Schema);
            opts.Services.AddDbContextWithWolverineIntegration<PeerDbContext>(o => o.UseNpgsql(database.ConnectionString), Schema);
            opts.UseEntityFrameworkCoreTransactions();
            opts.Policies.AutoApplyTransactions();
            opts.UseRabbitMq(broker.AmqpUri)
                .AutoProvision()
                .ConfigureChannelCreation(o =>
                {
                    o.PublisherConfirmationsEnabled = true;
                    o.PublisherConfirmationTrackingEnabled = true;
                });
            switch (which)
            {
                case Case.Outbox:
                    opts.Discovery.IncludeType(typeof(PeerOutboxHandler));
                    // Through an exchange bound to the queue (as ours publishes): a durable outbox on a queue's own endpoint would
                    // make its listener durable too (one Wolverine endpoint per queue), which writes and marks an incoming
                    // envelope per message; our consumer has no inbox, so neither does the peer's.
                    opts.PublishMessage<PeerOutboxMessage>().ToRabbitExchange("peer-outbox", e => e.BindQueue("peer-outbox")).UseDurableOutbox();
                    opts.ListenToRabbitQueue("peer-outbox").PreFetchCount(prefetch).MaximumParallelMessages(prefetch).BufferedInMemory();
                    break;
                case Case.Inbox:
                    opts.Discovery.IncludeType(typeof(PeerInboxHandler));
                    // Through an exchange (as ours publishes): on the queue's own endpoint the listener's durable inbox would make the
                    // sends durable too (an outgoing envelope written and deleted per message), which our plain sender does not pay.
                    opts.PublishMessage<PeerInboxMessage>().ToRabbitExchange("peer-inbox", e => e.BindQueue("peer-inbox")).SendInline();
                    opts.ListenToRabbitQueue("peer-inbox").PreFetchCount(prefetch).MaximumParallelMessages(prefetch).UseDurableInbox();
                    break;
                case Case.Plain:
                    opts.Discovery.IncludeType(typeof(PeerPlainHandler));
                    opts.PublishMessage<PeerPlainMessage>().ToRabbitQueue("peer-plain").SendInline();
                    opts.ListenToRabbitQueue("peer-plain").PreFetchCount(prefetch).MaximumParallelMessages(prefetch);
                    break;
            }
        });
        builder.Services.AddResourceSetupOnStartup();
        var host = builder.Build();
        await using (var connection = new NpgsqlConnection(database.ConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand("CREATE TABLE IF NOT EXISTS bench_rows (\"Id\" uuid PRIMARY KEY, \"Index\" integer NOT NULL)", connection);
            await create.ExecuteNonQueryAsync();
        }

        await host.StartAsync();
        return host;
    }

    static string Version(Type type) =>
        (type.Assembly.GetCustomAttributes(typeof(AssemblyInformationalVersionAttribute), false).FirstOrDefault() as AssemblyInformationalVersionAttribute)
            ?.InformationalVersion.Split('+')[0] ?? type.Assembly.GetName().Version?.ToString() ?? "?";
}
