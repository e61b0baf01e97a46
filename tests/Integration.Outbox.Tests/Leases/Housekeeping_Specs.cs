using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Integration.Outbox.Leases;
using Integration.Outbox.Model;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using NUnit.Framework;

namespace Integration.Outbox.Tests.Leases;

/// <summary>A DbContext with the outbox's tables: the outbox cleanup is the housekeeping these specs count.</summary>
public sealed class HousekeepingDbContext(DbContextOptions<HousekeepingDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationOutbox();
}

/// <summary>Counts <c>integration.housekeeping.runs</c> per host (the meter's scope is the host's <see cref="IMeterFactory"/>) and job.</summary>
sealed class HousekeepingRuns : IDisposable
{
    readonly MeterListener _listener = new();
    readonly ConcurrentDictionary<(object? Scope, string Job), long> _runs = new();

    public HousekeepingRuns()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Integration.Housekeeping" && instrument.Name == "integration.housekeeping.runs")
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var job = "";
            foreach (var tag in tags)
            {
                if (tag.Key == "job")
                    job = tag.Value as string ?? "";
            }

            _runs.AddOrUpdate((instrument.Meter.Scope, job), value, (_, total) => total + value);
        });
        _listener.Start();
    }

    public long Of(IntegrationServiceHost host, string job) => _runs.GetValueOrDefault((host.Services.GetRequiredService<IMeterFactory>(), job));

    public void Dispose() => _listener.Dispose();
}

[TestFixture, Category("Integration")]
public sealed class Housekeeping_Specs
{
    // Short for the specs: standbys try, and the leader confirms, every second.
    static readonly TimeSpan Lease = TimeSpan.FromSeconds(3);
    const string Job = "outbox-cleanup";

    static Task<IntegrationServiceHost> StartAsync(string instance, TestBroker broker, TestDatabase database, string? leaseDuration = null) =>
        IntegrationServiceHost.StartAsync(h =>
        {
            h.Services.AddDbContext<HousekeepingDbContext>(o => o.UseNpgsql(h.Database.ConnectionString));
            h.Services.AddIntegrationOutbox<HousekeepingDbContext>(o => o.CleanupInterval = TimeSpan.FromMilliseconds(200));
            h.Services.AddIntegrationHousekeeping<HousekeepingDbContext>();
            h.Services.AddMassTransit(x => x.UsingRabbitMq((context, cfg) =>
            {
                h.Broker.ConfigureHost(cfg);
                cfg.ConfigureEndpoints(context);
            }));
        }, o =>
        {
            (o.Broker, o.Database) = (broker, database);
            o.Settings["Integration:Housekeeping:Instance"] = instance;
            o.Settings["Integration:Housekeeping:LeaseDuration"] = leaseDuration ?? Lease.ToString();
        });

    static IHousekeepingLeader Leader(IntegrationServiceHost host) => host.Services.GetRequiredService<IHousekeepingLeader>();

    static Task<bool> Eventually(Func<bool> condition, TimeSpan within) =>
        Integration.Testing.Eventually.TrueAsync(() => Task.FromResult(condition()), within, TimeSpan.FromMilliseconds(50));

    [Test]
    public async Task When_two_hosts_share_a_database_should_run_housekeeping_on_exactly_one_and_name_it_on_both()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("housekeeping");
        await using var database = await infrastructure.CreateDatabaseAsync("housekeeping");
        using var runs = new HousekeepingRuns();
        await using var first = await StartAsync("first", broker, database);
        await using var second = await StartAsync("second", broker, database);

        Assert.That(await Eventually(() => runs.Of(first, Job) + runs.Of(second, Job) >= 10, TimeSpan.FromSeconds(30)), Is.True,
            "the outbox cleanup never ran on either host");
        var (leader, standby) = Leader(first).IsLeader ? (first, second) : (second, first);
        Assert.That(await Eventually(() => Leader(standby).Leader == Leader(leader).Instance, TimeSpan.FromSeconds(10)), Is.True,
            () => $"the standby says the leader is '{Leader(standby).Leader}', not '{Leader(leader).Instance}'");
        var health = await standby.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == "housekeeping");

        Assert.Multiple(() =>
        {
            Assert.That(Leader(leader).IsLeader && !Leader(standby).IsLeader, Is.True, "exactly one host leads");
            Assert.That(runs.Of(standby, Job), Is.Zero, "the standby ran the outbox cleanup");
            Assert.That(runs.Of(leader, Job), Is.GreaterThanOrEqualTo(10));
            Assert.That(health.Entries["housekeeping"].Data["leader"], Is.EqualTo(Leader(leader).Instance), "readiness data names the leader");
            Assert.That(health.Entries["housekeeping"].Data["isLeader"], Is.EqualTo(false));
        });
    }

    [Test]
    public async Task When_the_leader_stops_should_hand_housekeeping_to_the_other_host_within_the_lease()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("housekeeping");
        await using var database = await infrastructure.CreateDatabaseAsync("housekeeping");
        using var runs = new HousekeepingRuns();
        var first = await StartAsync("first", broker, database);
        Assert.That(await Eventually(() => Leader(first).IsLeader, TimeSpan.FromSeconds(30)), Is.True, "the only host never became the leader");
        await using var second = await StartAsync("second", broker, database);
        var standbyRuns = runs.Of(second, Job);

        await first.DisposeAsync();   // a graceful stop ends the lease's session: the lock is free at once

        Assert.That(await Eventually(() => Leader(second).IsLeader, 2 * Lease), Is.True, $"the standby did not take over within twice the lease ({Lease})");
        Assert.That(await Eventually(() => runs.Of(second, Job) > standbyRuns, TimeSpan.FromSeconds(10)), Is.True,
            "the new leader never ran the outbox cleanup");
        Assert.That(standbyRuns, Is.Zero, "the standby ran the cleanup while the other host led");
    }

    [Test]
    public async Task When_the_leaders_database_session_dies_should_step_it_down_and_hand_housekeeping_to_the_other_host()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("housekeeping");
        await using var database = await infrastructure.CreateDatabaseAsync("housekeeping");
        await using var first = await StartAsync("first", broker, database);
        Assert.That(await Eventually(() => Leader(first).IsLeader, TimeSpan.FromSeconds(30)), Is.True, "the only host never became the leader");
        await using var second = await StartAsync("second", broker, database);
        Assert.That(await Eventually(() => Leader(second).Leader == "first", TimeSpan.FromSeconds(10)), Is.True, "the standby never saw the leader");

        // What PostgreSQL sees when the leader's process dies or its network is cut: the session ends and its lock goes with it.
        await using (var connection = new NpgsqlConnection(database.ConnectionString))
        {
            await connection.OpenAsync();
            await using var kill = new NpgsqlCommand("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'integration-lease:first'", connection);
            Assert.That(await kill.ExecuteScalarAsync(), Is.EqualTo(1L), "the leader's lease session was not found");
        }

        Assert.That(await Eventually(() => Leader(second).IsLeader, 2 * Lease), Is.True, $"the standby did not take over within twice the lease ({Lease})");
        Assert.That(await Eventually(() => !Leader(first).IsLeader && Leader(first).Leader == "second", 2 * Lease), Is.True,
            () => $"the old leader did not step down and follow the new one (IsLeader {Leader(first).IsLeader}, leader '{Leader(first).Leader}')");
    }

    [Test]
    public async Task When_the_lease_duration_is_out_of_range_should_fail_at_start_naming_the_setting()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("housekeeping");
        await using var database = await infrastructure.CreateDatabaseAsync("housekeeping");

        var failure = Assert.CatchAsync(() => StartAsync("first", broker, database, leaseDuration: "00:00:00.100"));

        Assert.That(failure!.ToString(), Does.Contain("Integration:Housekeeping:LeaseDuration must be between 00:00:01 and 00:10:00"));
    }
}
