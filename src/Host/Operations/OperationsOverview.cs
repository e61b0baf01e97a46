using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Host.Configuration;
using Integration.Host.Fulfillment;
using Integration.Host.Persistence;
using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Integration.Host.Operations;

/// <summary>
/// The host's operational meter (<c>Integration.Host.Operations</c>): outbox backlog, dead letters per queue, saga
/// instances by state, stored messages, probes, smart proxy requests and circuit state. Gauges read the last
/// <see cref="OperationsOverview"/> snapshot, so a scrape never waits for the broker or the database.
/// </summary>
public static class OperationsMetrics
{
    /// <summary>Meter name (exported: the host exports <c>Integration.*</c>).</summary>
    public const string Name = "Integration.Host.Operations";

    static readonly Meter Meter = new(Name);

    internal static volatile OperationsSnapshot? Latest;

    /// <summary>Messages written to the message store.</summary>
    public static readonly Counter<long> Stored = Meter.CreateCounter<long>("integration.message_store.stored", "{message}", "Messages written to the message store");

    /// <summary>Probe round trips, by route and outcome.</summary>
    public static readonly Histogram<double> ProbeLatency = Meter.CreateHistogram<double>("integration.probe.latency", "ms", "Round-trip time of test messages through a route");

    /// <summary>Probes sent and their outcome.</summary>
    public static readonly Counter<long> Probes = Meter.CreateCounter<long>("integration.probe.results", "{probe}", "Test messages by outcome (ok, timeout)");

    /// <summary>Last probe outcome per route (1 ok, 0 failed), set by the prober.</summary>
    internal static readonly ConcurrentDictionary<string, int> ProbeUp = new(StringComparer.Ordinal);

    static OperationsMetrics()
    {
        Meter.CreateObservableGauge("integration.outbox.backlog", () => Latest?.OutboxBacklog ?? 0, "{message}", "Outbox messages not yet delivered (from the table)");
        Meter.CreateObservableGauge("integration.dead_letters", () => (Latest?.DeadLetters ?? []).Select(d =>
            new Measurement<long>(d.Messages, new KeyValuePair<string, object?>("queue", d.Queue))), "{message}", "Messages in each error queue");
        Meter.CreateObservableGauge("integration.saga.instances", () => (Latest?.Sagas ?? []).Select(s =>
            new Measurement<long>(s.Count, new KeyValuePair<string, object?>("saga", s.Saga), new KeyValuePair<string, object?>("state", s.State))), "{instance}",
            "Saga instances by state");
        Meter.CreateObservableGauge("integration.message_store.size", () => Latest?.StoredMessages ?? 0, "{message}", "Messages in the message store");
        Meter.CreateObservableGauge("integration.queue.depth", () => (Latest?.Queues ?? []).Select(q =>
            new Measurement<long>(q.Messages, new KeyValuePair<string, object?>("queue", q.Name))), "{message}", "Messages waiting in each queue");
        Meter.CreateObservableGauge("integration.probe.up", () => ProbeUp.Select(p =>
            new Measurement<int>(p.Value, new KeyValuePair<string, object?>("route", p.Key))), null, "1 when the route's last test message came through in time, else 0");
    }

    /// <summary>Makes sure the static gauges exist (touching the class runs its constructor).</summary>
    internal static void EnsureCreated() => _ = Meter;
}

/// <summary>A queue with its depth and rates (from the RabbitMQ management API).</summary>
public sealed record QueueStatus(string Name, long Messages, long Consumers, double PublishRate, double DeliverRate);

/// <summary>Saga instances in one state.</summary>
public sealed record SagaStateCount(string Saga, string State, long Count);

/// <summary>What the dashboard and the gauges show, measured at <see cref="At"/>.</summary>
public sealed record OperationsSnapshot(DateTimeOffset At, IReadOnlyList<QueueStatus> Queues, IReadOnlyList<DeadLetterQueue> DeadLetters, long OutboxBacklog,
    IReadOnlyList<SagaStateCount> Sagas, long StoredMessages, IReadOnlyList<string> Errors);

/// <summary>Measures the <see cref="OperationsSnapshot"/>: on demand (the dashboard) and every few seconds in the background (the gauges).</summary>
public sealed partial class OperationsOverview(IServiceScopeFactory scopes, IOptions<RabbitMqOptions> rabbit, IHttpClientFactory http, TimeProvider time,
    IConfiguration configuration, ILogger<OperationsOverview> logger) : BackgroundService
{
    /// <summary>Setting: seconds between background measurements (default 5).</summary>
    public const string IntervalSetting = "Integration:Operations:RefreshSeconds";

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
        IReadOnlyList<SagaStateCount> sagas = [];
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
            backlog = await db.Set<OutboxMessage>().LongCountAsync(m => m.DeliveredAt == null, cancellationToken).ConfigureAwait(false);
            stored = await db.Set<StoredMessage>().LongCountAsync(cancellationToken).ConfigureAwait(false);
            sagas = (await db.Set<OrderFulfillmentState>().GroupBy(s => s.CurrentState).Select(g => new { State = g.Key, Count = g.LongCount() })
                    .ToListAsync(cancellationToken).ConfigureAwait(false))
                .Select(s => new SagaStateCount("order-fulfillment", s.State, s.Count)).OrderBy(s => s.State, StringComparer.Ordinal).ToList();
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            errors.Add($"PostgreSQL: {exception.Message}");
        }

        var deadLetters = queues.Where(q => q.Name.EndsWith(DeadLetterService.ErrorSuffix, StringComparison.Ordinal))
            .Select(q => new DeadLetterQueue(q.Name, q.Name[..^DeadLetterService.ErrorSuffix.Length], q.Messages)).ToList();
        var snapshot = new OperationsSnapshot(time.GetUtcNow(), queues, deadLetters, backlog, sagas, stored, errors);
        OperationsMetrics.Latest = snapshot;
        return snapshot;
    }

    async Task<IReadOnlyList<QueueStatus>> QueuesAsync(CancellationToken cancellationToken)
    {
        var settings = rabbit.Value;
        using var client = http.CreateClient("rabbitmq-management");
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

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        OperationsMetrics.EnsureCreated();
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
