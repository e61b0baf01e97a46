using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Linq.Expressions;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Hosting;
using Integration.Outbox.Model;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>
/// The operational meter <c>Integration.Operations</c>: outbox backlog, dead letters per queue, saga instances by state,
/// stored messages, queue depths, probes. Gauges read the last <see cref="OperationsSnapshot"/>, so a scrape never waits
/// for the broker or the database. One per service provider (created through <see cref="IMeterFactory"/>).
/// </summary>
sealed class OperationsMetrics
{
    /// <summary>Meter name (exported with <c>Integration.*</c>).</summary>
    public const string Name = "Integration.Operations";

    volatile OperationsSnapshot? _latest;

    public OperationsMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(Name);
        Stored = meter.CreateCounter<long>("integration.message_store.stored", "{message}", "Messages written to the message store");
        ProbeLatency = meter.CreateHistogram<double>("integration.probe.latency", "ms", "Round-trip time of test messages through a route");
        Probes = meter.CreateCounter<long>("integration.probe.results", "{probe}", "Test messages by outcome (ok, timeout)");
        meter.CreateObservableGauge("integration.outbox.backlog", () => _latest?.OutboxBacklog ?? 0, "{message}", "Outbox messages not yet delivered (from the table)");
        meter.CreateObservableGauge("integration.dead_letters", () => (_latest?.DeadLetters ?? []).Select(d =>
            new Measurement<long>(d.Messages, new KeyValuePair<string, object?>("queue", d.Queue))), "{message}", "Messages in each error queue");
        meter.CreateObservableGauge("integration.saga.instances", () => (_latest?.Sagas ?? []).Select(s =>
            new Measurement<long>(s.Count, new KeyValuePair<string, object?>("saga", s.Saga), new KeyValuePair<string, object?>("state", s.State))), "{instance}",
            "Saga instances by state");
        meter.CreateObservableGauge("integration.message_store.size", () => _latest?.StoredMessages ?? 0, "{message}", "Messages in the message store");
        meter.CreateObservableGauge("integration.queue.depth", () => (_latest?.Queues ?? []).Select(q =>
            new Measurement<long>(q.Messages, new KeyValuePair<string, object?>("queue", q.Name))), "{message}", "Messages waiting in each queue");
        meter.CreateObservableGauge("integration.probe.up", () => ProbeUp.Select(p =>
            new Measurement<int>(p.Value, new KeyValuePair<string, object?>("route", p.Key))), null, "1 when the route's last test message came through in time, else 0");
    }

    public Counter<long> Stored { get; }

    public Histogram<double> ProbeLatency { get; }

    public Counter<long> Probes { get; }

    /// <summary>Last probe outcome per route (1 ok, 0 failed), set by the prober.</summary>
    public ConcurrentDictionary<string, int> ProbeUp { get; } = new(StringComparer.Ordinal);

    public void Report(OperationsSnapshot snapshot) => _latest = snapshot;
}

/// <summary>A queue with its depth and rates (from the RabbitMQ management API).</summary>
sealed record QueueStatus(string Name, long Messages, long Consumers, double PublishRate, double DeliverRate);

/// <summary>Saga instances in one state.</summary>
sealed record SagaStateCount(string Saga, string State, long Count);

/// <summary>What the dashboard and the gauges show, measured at <see cref="At"/>.</summary>
sealed record OperationsSnapshot(DateTimeOffset At, IReadOnlyList<QueueStatus> Queues, IReadOnlyList<DeadLetterQueue> DeadLetters, long OutboxBacklog,
    IReadOnlyList<SagaStateCount> Sagas, long StoredMessages, IReadOnlyList<string> Errors);

/// <summary>Counts one saga's instances by state, for the <c>integration.saga.instances</c> gauge and the dashboard.</summary>
abstract class SagaGauge(string saga)
{
    public string Saga { get; } = saga;

    public abstract Task<IReadOnlyList<SagaStateCount>> CountAsync(DbContext db, CancellationToken cancellationToken);
}

sealed class SagaGauge<TSaga>(string saga, Expression<Func<TSaga, string>> state) : SagaGauge(saga)
    where TSaga : class, SagaStateMachineInstance
{
    public override async Task<IReadOnlyList<SagaStateCount>> CountAsync(DbContext db, CancellationToken cancellationToken) =>
        (await db.Set<TSaga>().GroupBy(state).Select(g => new { State = g.Key, Count = g.LongCount() }).ToListAsync(cancellationToken).ConfigureAwait(false))
        .Select(s => new SagaStateCount(Saga, s.State, s.Count)).ToList();
}

/// <summary>Measures the <see cref="OperationsSnapshot"/>: on demand (the dashboard) and every few seconds in the background (the gauges).</summary>
sealed partial class OperationsOverview(IServiceScopeFactory scopes, OperationsDatabase database, IEnumerable<SagaGauge> sagas, OperationsMetrics metrics,
    IOptions<RabbitMqOptions> rabbit, IHttpClientFactory http, TimeProvider time, IConfiguration configuration, ILogger<OperationsOverview> logger) : BackgroundService
{
    /// <summary>Setting: seconds between background measurements (default 5).</summary>
    public const string IntervalSetting = "Integration:Operations:RefreshSeconds";

    readonly IReadOnlyList<SagaGauge> _sagas = sagas.ToList();

    TimeSpan Interval => TimeSpan.FromSeconds(Math.Clamp(configuration.GetValue(IntervalSetting, 5), 1, 3600));

    /// <summary>Measures now.</summary>
    public async Task<OperationsSnapshot> MeasureAsync(CancellationToken cancellationToken)
    {
        var errors = new List<string>();
        IReadOnlyList<QueueStatus> queues = [];
        try
        {
            queues = await QueuesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is HttpRequestException or JsonException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            errors.Add($"RabbitMQ management API: {exception.Message}");
        }

        long backlog = 0, stored = 0;
        var counts = new List<SagaStateCount>();
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = database.Open(scope.ServiceProvider);
            if (db.Model.FindEntityType(typeof(OutboxMessage)) is not null)
                backlog = await db.Set<OutboxMessage>().LongCountAsync(m => m.DeliveredAt == null, cancellationToken).ConfigureAwait(false);
            stored = await db.Set<StoredMessage>().LongCountAsync(cancellationToken).ConfigureAwait(false);
            foreach (var saga in _sagas)
                counts.AddRange(await saga.CountAsync(db, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            errors.Add($"PostgreSQL: {exception.Message}");
        }

        var deadLetters = queues.Where(q => q.Name.EndsWith(DeadLetterService.ErrorSuffix, StringComparison.Ordinal))
            .Select(q => new DeadLetterQueue(q.Name, q.Name[..^DeadLetterService.ErrorSuffix.Length], q.Messages)).ToList();
        var snapshot = new OperationsSnapshot(time.GetUtcNow(), queues, deadLetters, backlog,
            counts.OrderBy(s => s.Saga, StringComparer.Ordinal).ThenBy(s => s.State, StringComparer.Ordinal).ToList(), stored, errors);
        metrics.Report(snapshot);
        return snapshot;
    }

    async Task<IReadOnlyList<QueueStatus>> QueuesAsync(CancellationToken cancellationToken)
    {
        var settings = rabbit.Value;
        using var client = http.CreateClient(DeadLetterService.ManagementClient);
        client.BaseAddress = settings.EffectiveManagementUri;
        client.Timeout = TimeSpan.FromSeconds(5);
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{settings.Username}:{settings.Password}")));
        var queues = await client.GetFromJsonAsync<JsonElement>(
            $"api/queues/{Uri.EscapeDataString(settings.VirtualHost)}?columns=name,messages,consumers,message_stats", cancellationToken).ConfigureAwait(false);
        static double Rate(JsonElement queue, string name) =>
            queue.TryGetProperty("message_stats", out var stats) && stats.TryGetProperty(name, out var details) && details.TryGetProperty("rate", out var rate)
                && rate.ValueKind == JsonValueKind.Number ? rate.GetDouble() : 0;
        static long Number(JsonElement queue, string name) =>
            queue.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt64() : 0;
        return queues.EnumerateArray()
            .Select(q => new QueueStatus(q.GetProperty("name").GetString() ?? "", Number(q, "messages"), Number(q, "consumers"),
                Rate(q, "publish_details"), Rate(q, "deliver_get_details")))
            .OrderBy(q => q.Name, StringComparer.Ordinal)
            .ToList();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var snapshot = await MeasureAsync(stoppingToken).ConfigureAwait(false);
                foreach (var error in snapshot.Errors)
                    LogMeasureFailed(logger, error);
                await Task.Delay(Interval, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Operations snapshot incomplete: {Error}")]
    static partial void LogMeasureFailed(ILogger logger, string error);
}
