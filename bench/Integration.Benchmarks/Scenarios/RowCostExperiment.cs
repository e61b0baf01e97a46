using System.Data.Common;
using System.Diagnostics;
using Integration.Benchmarks.Harness;
using Integration.Outbox.Model;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;

namespace Integration.Benchmarks.Scenarios;

/// <summary>The outbox's own tables and row type, without the outbox's services: nothing relays what is written here.</summary>
public sealed class ShadowDbContext(DbContextOptions<ShadowDbContext> options) : DbContext(options)
{
    public OutboxMessage? Raw;

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<BenchRow>().ToTable("bench_rows");
        modelBuilder.AddIntegrationOutbox();
    }
}

/// <summary>Appends the row's INSERT to EF Core's command (outside the change tracker).</summary>
sealed class AppendShadow : DbCommandInterceptor
{
    const string Sql = ";\nINSERT INTO outbox_messages (transaction_id, message_id, destination, message_type, body, correlation_id, created_at, trace_parent, trace_state, envelope, lock_token, locked_until, attempts) " +
        "VALUES (@sx0, @sx1, @sx2, @sx3, @sx4, @sx5, @sx6, @sx7, @sx8, @sx9, @sx10, @sx11, @sx12)";

    public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        if (eventData.Context is ShadowDbContext { Raw: { } row } context && command is NpgsqlCommand npgsql)
        {
            context.Raw = null;
            npgsql.CommandText += Sql;
            var p = npgsql.Parameters;
            p.Add(new NpgsqlParameter<Guid>("sx0", row.TransactionId));
            p.Add(new NpgsqlParameter<Guid>("sx1", row.MessageId));
            p.Add(new NpgsqlParameter("sx2", NpgsqlDbType.Text) { Value = (object?)row.Destination ?? DBNull.Value });
            p.Add(new NpgsqlParameter<string>("sx3", row.MessageType));
            p.Add(new NpgsqlParameter<string>("sx4", NpgsqlDbType.Jsonb) { TypedValue = row.Body });
            p.Add(new NpgsqlParameter("sx5", NpgsqlDbType.Uuid) { Value = (object?)row.CorrelationId ?? DBNull.Value });
            p.Add(new NpgsqlParameter<DateTimeOffset>("sx6", row.CreatedAt));
            p.Add(new NpgsqlParameter("sx7", NpgsqlDbType.Text) { Value = (object?)row.TraceParent ?? DBNull.Value });
            p.Add(new NpgsqlParameter("sx8", NpgsqlDbType.Text) { Value = (object?)row.TraceState ?? DBNull.Value });
            p.Add(new NpgsqlParameter("sx9", NpgsqlDbType.Jsonb) { Value = (object?)row.Envelope ?? DBNull.Value });
            p.Add(new NpgsqlParameter("sx10", NpgsqlDbType.Uuid) { Value = (object?)row.LockToken ?? DBNull.Value });
            p.Add(new NpgsqlParameter("sx11", NpgsqlDbType.TimestampTz) { Value = (object?)row.LockedUntil ?? DBNull.Value });
            p.Add(new NpgsqlParameter<int>("sx12", row.Attempts));
        }

        return base.ReaderExecutingAsync(command, eventData, result, cancellationToken);
    }
}

/// <summary>INTEGRATION_BENCH_OUTBOX_ONLY=rowcost: commit + direct publish with a second, outbox-shaped row: none, through EF Core's change tracker, or appended to EF Core's command.</summary>
static class RowCostExperiment
{
    public static async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        var rates = await context.InTurnsAsync(
            count => Measure(context, count, 0),
            count => Measure(context, count, 1),
            count => Measure(context, count, 2));
        return
        [
            new Result("4 rowcost", "commit + publish, no second row", "throughput", rates[0], "msg/s"),
            new Result("4 rowcost", "+ outbox-shaped row via EF change tracker", "throughput", rates[1], "msg/s", "no second row", rates[0]),
            new Result("4 rowcost", "+ the same row appended to EF's command", "throughput", rates[2], "msg/s", "no second row", rates[0]),
            new Result("4 rowcost", "+ the same row appended to EF's command", "throughput", rates[2], "msg/s", "via change tracker", rates[1]),
        ];
    }

    /// <summary>
    /// Mode 2 is the floor of any outbox that writes one row per message and publishes it with confirms: the row is written
    /// in the business commit's one command at no framework cost (no change tracking, no relay, no mark or delete afterwards),
    /// and the writer publishes it itself. An outbox cannot run faster than this on the same machine.
    /// </summary>
    internal static Task<double> Floor(BenchContext context, int count) => Measure(context, count, 2);

    static async Task<double> Measure(BenchContext context, int count, int mode)
    {
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync("bench-rowcost");
        await using var database = await context.Infrastructure.CreateDatabaseAsync("bench_rowcost");
        var probe = new LatencyProbe(count, LatencyProbe.HostWarmUp);
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(probe);
        var append = new AppendShadow();
        builder.Services.AddDbContext<ShadowDbContext>(o => o.UseNpgsql(database.ConnectionString).AddInterceptors(append), optionsLifetime: ServiceLifetime.Singleton);
        builder.Services.AddMassTransit(x =>
        {
            x.AddConsumer<ProbeConsumer>().ExcludeFromConfigureEndpoints();
            x.UsingRabbitMq((registration, cfg) =>
            {
                broker.ConfigureHost(cfg);
                cfg.PrefetchCount = context.Settings.Prefetch;
                cfg.ReceiveEndpoint("bench-consumer", e => e.ConfigureConsumer<ProbeConsumer>(registration));
            });
        });
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        using var host = builder.Build();
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<ShadowDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
        var bus = host.Services.GetRequiredService<IBus>();

        async Task Commit(int i)
        {
            await using var scope = host.Services.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<ShadowDbContext>();
            // One command in PostgreSQL's implicit transaction in every mode, as the outbox's writer saves.
            db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
            db.Add(new BenchRow { Id = Guid.NewGuid(), Index = i });
            if (mode > 0)
            {
                var row = new OutboxMessage
                {
                    TransactionId = Guid.CreateVersion7(), MessageId = Guid.CreateVersion7(),
                    MessageType = typeof(OutboxBenchMessage).AssemblyQualifiedName!,
                    Body = System.Text.Json.JsonSerializer.Serialize(new OutboxBenchMessage(i)),
                    CreatedAt = DateTimeOffset.UtcNow, Envelope = "{\"conversationId\":\"" + Guid.CreateVersion7() + "\"}",
                    LockToken = Guid.NewGuid(), LockedUntil = DateTimeOffset.UtcNow.AddMinutes(1), Attempts = 1,
                };
                if (mode == 1)
                    db.Add(row);
                else
                    db.Raw = row;
            }

            await db.SaveChangesAsync();
            if (i >= 0)
                probe.Sent(i);
            await bus.Publish(new OutboxBenchMessage(i));
        }

        await Pump.RunAsync(LatencyProbe.HostWarmUp, 8, i => Commit(-1 - i));
        await probe.WarmUp.WaitAsync(TimeSpan.FromMinutes(1), "rowcost warm-up");
        using var profile = await Profile.StartAsync(context, database);
        var stopwatch = Stopwatch.StartNew();
        await Pump.RunAsync(count, context.Settings.Concurrency, Commit);
        await probe.Done.WaitAsync(TimeSpan.FromMinutes(3), "rowcost");
        profile?.TrafficDone();
        var rate = count / stopwatch.Elapsed.TotalSeconds;
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var rows = await scope.ServiceProvider.GetRequiredService<ShadowDbContext>().Set<OutboxMessage>().CountAsync();
            Console.Error.WriteLine($"[bench] rowcost mode {mode}: {rows} outbox rows");
        }

        await host.StopAsync();
        if (profile is not null)
            await profile.ReportAsync($"rowcost mode {mode}", count);
        return rate;
    }
}
