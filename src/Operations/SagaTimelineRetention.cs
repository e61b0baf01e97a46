using Integration.Outbox.Leases;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>
/// Deletes the timelines of instances that have been quiet for longer than
/// <see cref="SagaInspectionOptions.TimelineRetentionDays"/>: every row of an instance whose newest row is older than the
/// retention, so no instance is left with half a history. Runs at start and then hourly, on the housekeeping leader when
/// one is elected, in statements of at most <see cref="InstancesPerStatement"/> instances (no long lock on live rows).
/// </summary>
sealed partial class SagaTimelineRetention(IOptionsMonitor<SagaInspectionOptions> options, OperationsDatabase database, IServiceScopeFactory scopes,
    IServiceProvider services, TimeProvider time, ILogger<SagaTimelineRetention> logger) : BackgroundService
{
    internal const int InstancesPerStatement = 1000;
    internal const string Job = "saga-timeline-retention";
    static readonly TimeSpan Interval = TimeSpan.FromHours(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            // Let the host finish starting (and a housekeeping leader be elected) first.
            await Task.Delay(TimeSpan.FromSeconds(2), time, stoppingToken).ConfigureAwait(false);
            while (!stoppingToken.IsCancellationRequested)
            {
                if (options.CurrentValue.TimelineRetention is { } retention && services.HousekeepingMayRun(Job))
                {
                    try
                    {
                        var deleted = await PruneAsync(time.GetUtcNow() - retention, stoppingToken).ConfigureAwait(false);
                        if (deleted > 0)
                            LogPruned(logger, deleted, retention.TotalDays);
                    }
                    catch (Exception exception) when (exception is not OperationCanceledException)
                    {
                        LogPruneFailed(logger, exception);
                    }
                }

                await Task.Delay(Interval, time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Deletes the timelines whose newest row is older than <paramref name="before"/>; returns the rows deleted.</summary>
    internal async Task<int> PruneAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        var total = 0;
        while (true)
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = database.Open(scope.ServiceProvider);
            var rows = db.Set<SagaTimelineEntry>();
            var quiet = rows.GroupBy(e => new { e.Saga, e.CorrelationId })
                .Where(g => g.Max(e => e.At) < before)
                .Select(g => g.Key)
                .Take(InstancesPerStatement);
            var deleted = await rows.Where(e => quiet.Any(k => k.Saga == e.Saga && k.CorrelationId == e.CorrelationId))
                .ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
            total += deleted;
            if (deleted == 0)
                return total;
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Saga timelines: deleted {Rows} row(s) of instances quiet for more than {Days} day(s)")]
    static partial void LogPruned(ILogger logger, int rows, double days);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Saga timelines: the retention delete failed; it runs again within the hour")]
    static partial void LogPruneFailed(ILogger logger, Exception exception);
}
