using System.Diagnostics.Metrics;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integration.Outbox.Leases;

/// <summary>
/// Holds or waits for the housekeeping lease on <typeparamref name="TDbContext"/>'s database: every
/// <see cref="HousekeepingOptions.CheckInterval"/> a standby tries to take it and the leader confirms it. A leader
/// that cannot confirm (database unreachable, session terminated) steps down at once. Stopping the host releases it.
/// </summary>
sealed partial class HousekeepingLeader<TDbContext>(IServiceScopeFactory scopes, IOptions<HousekeepingOptions> options, HousekeepingMetrics metrics,
    ILogger<HousekeepingLeader<TDbContext>> logger) : BackgroundService, IHousekeepingLeader
    where TDbContext : DbContext
{
    readonly HousekeepingOptions _options = options.Value;
    volatile bool _isLeader = !options.Value.Enabled;
    volatile string? _leader;

    public string Instance { get; } = options.Value.Instance ?? $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";

    public bool IsLeader => _isLeader;

    public string? Leader => _options.Enabled ? _leader : Instance;

    public bool TryRun(string job)
    {
        if (!_isLeader)
            return false;
        metrics.Runs.Add(1, new KeyValuePair<string, object?>("job", job));
        return true;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!_options.Enabled)
            return;
        string connectionString;
        await using (var scope = scopes.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            connectionString = db.Database.GetConnectionString()
                ?? throw new InvalidOperationException($"{HousekeepingOptions.Section}: {typeof(TDbContext).Name} has no connection string to hold the lease on");
        }

        var lease = new PostgresLeaderLease(connectionString, _options.LeaseName, Instance, _options.CheckInterval);
        await using (lease.ConfigureAwait(false))
        {
            var failures = 0;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var held = await lease.TryHoldAsync(stoppingToken).ConfigureAwait(false);
                    _leader = held ? Instance : await lease.HolderAsync(stoppingToken).ConfigureAwait(false);
                    SetLeader(held);
                    failures = 0;
                }
                catch (Exception exception) when (!stoppingToken.IsCancellationRequested)
                {
                    // The session is gone: whatever we held, PostgreSQL releases with it. Step down now, not at the next check.
                    SetLeader(false);
                    _leader = null;
                    if (failures++ % 10 == 0)
                        LogCheckFailed(logger, exception, _options.LeaseName, exception.Message);
                }

                try
                {
                    await Task.Delay(_options.CheckInterval, stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            SetLeader(false);
        }   // disposing the lease ends its session: the lock is free for the next host at once
    }

    void SetLeader(bool leader)
    {
        if (leader == _isLeader)
            return;
        _isLeader = leader;
        metrics.Changes.Add(1);
        if (leader)
            LogAcquired(logger, Instance, _options.LeaseName);
        else
            LogLost(logger, Instance, _options.LeaseName);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Housekeeping: {Instance} is the leader (lease '{Lease}'); it runs the cleanups for every host")]
    static partial void LogAcquired(ILogger logger, string instance, string lease);

    [LoggerMessage(Level = LogLevel.Information, Message = "Housekeeping: {Instance} is no longer the leader (lease '{Lease}')")]
    static partial void LogLost(ILogger logger, string instance, string lease);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Housekeeping: checking the lease '{Lease}' failed ({Reason}); not the leader until it succeeds")]
    static partial void LogCheckFailed(ILogger logger, Exception exception, string lease, string reason);
}

/// <summary>Meter <c>Integration.Housekeeping</c>.</summary>
sealed class HousekeepingMetrics
{
    public HousekeepingMetrics(IMeterFactory meters, IServiceProvider services)
    {
        var meter = meters.Create("Integration.Housekeeping");
        Runs = meter.CreateCounter<long>("integration.housekeeping.runs", description: "Housekeeping passes run by this process as the leader, by job");
        Changes = meter.CreateCounter<long>("integration.housekeeping.leadership.changes", description: "Times this process became or stopped being the housekeeping leader");
        meter.CreateObservableGauge("integration.housekeeping.leader", () => services.GetService<IHousekeepingLeader>()?.IsLeader == true ? 1 : 0,
            description: "1 while this process is the housekeeping leader");
    }

    public Counter<long> Runs { get; }

    public Counter<long> Changes { get; }
}
