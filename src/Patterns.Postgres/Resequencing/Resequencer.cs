using System.Globalization;
using System.Text.Json;
using Integration.Outbox.Leases;
using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Postgres.Storage;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.Postgres.Resequencing;

/// <summary>How a resequencer groups and orders messages, and which mode it runs in (exactly one of <see cref="Batch"/>, <see cref="Stream"/>).</summary>
public interface IResequencerConfigurator<T>
    where T : class
{
    /// <summary>The group (batch) or stream a message belongs to. Default: the sequence id header (<see cref="MessageSequence"/>).</summary>
    IResequencerConfigurator<T> CorrelateBy(Func<T, string> key);

    /// <summary>A message's position. Default: the sequence index header.</summary>
    IResequencerConfigurator<T> SequenceBy(Func<T, long> sequence);

    /// <summary>
    /// Batch mode (Camel <c>batch-config</c>): hold a group until it is complete — <paramref name="size"/> messages, or as many as
    /// the sequence headers say when null — or <paramref name="timeout"/> after its first message, then release its messages
    /// in sequence order.
    /// </summary>
    IResequencerConfigurator<T> Batch(TimeSpan timeout, int? size = null);

    /// <summary>
    /// Stream mode (Camel <c>stream-config</c>): release each message as soon as every earlier one of its stream has gone,
    /// starting at <paramref name="startAt"/>; a gap nobody fills for <paramref name="gapTimeout"/> is skipped.
    /// </summary>
    IResequencerConfigurator<T> Stream(TimeSpan gapTimeout, long startAt = 0);

    /// <summary>How often timeouts are checked (default 1 s).</summary>
    TimeSpan PollInterval { set; }
}

/// <summary>
/// Resequencer (EIP; Camel <c>resequence</c>): puts messages back in order. State is kept in PostgreSQL in the
/// aggregation tables (a group row per batch or stream, locked while a message joins; a row per held message), so it
/// survives restarts and several consumers. Needs <c>services.AddIntegrationPatternStore&lt;TDbContext&gt;()</c> and <c>modelBuilder.AddIntegrationPatterns()</c>.
/// </summary>
public static class ResequencerExtensions
{
    /// <summary>Sends the messages on to <paramref name="to"/> in sequence order; the route ends here.</summary>
    public static IRouteConfigurator<T> Resequence<T>(this IRouteConfigurator<T> route, Action<IResequencerConfigurator<T>> configure, string to, string? name = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(configure);
        var specification = new ResequencerSpecification<T>(to, name ?? $"resequence:{to}");
        configure(specification);
        return route.AddStep(specification);
    }
}

/// <summary>Specification of a resequencer.</summary>
internal sealed class ResequencerSpecification<T> : IRouteStepSpecification<T>, IResequencerConfigurator<T>
    where T : class
{
    readonly string _to;
    readonly List<string> _modes = [];
    Func<T, string>? _key;
    Func<T, long>? _sequence;
    TimeSpan _timeout;
    int? _size;
    long _startAt;
    TimeSpan _pollInterval = TimeSpan.FromSeconds(1);

    internal ResequencerSpecification(string to, string name)
    {
        _to = to;
        Name = name;
    }

    /// <inheritdoc />
    public string Kind => "Resequence";

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public TimeSpan PollInterval { set => _pollInterval = value; }

    /// <inheritdoc />
    public IResequencerConfigurator<T> CorrelateBy(Func<T, string> key)
    {
        _key = key;
        return this;
    }

    /// <inheritdoc />
    public IResequencerConfigurator<T> SequenceBy(Func<T, long> sequence)
    {
        _sequence = sequence;
        return this;
    }

    /// <inheritdoc />
    public IResequencerConfigurator<T> Batch(TimeSpan timeout, int? size = null)
    {
        _modes.Add("Batch");
        _timeout = timeout;
        _size = size;
        return this;
    }

    /// <inheritdoc />
    public IResequencerConfigurator<T> Stream(TimeSpan gapTimeout, long startAt = 0)
    {
        _modes.Add("Stream");
        _timeout = gapTimeout;
        _startAt = startAt;
        return this;
    }

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (!RouteSender.IsValidQueueName(_to))
            yield return $"destination '{_to}' is not a valid queue name";
        if (_modes.Count != 1)
            yield return _modes.Count == 0 ? "no mode: call Batch(..) or Stream(..)" : $"choose one mode, not {string.Join(" and ", _modes)}";
        if (_modes.Count > 0 && _timeout <= TimeSpan.Zero)
            yield return $"the timeout must be positive, not {_timeout}";
        if (_size is < 1)
            yield return $"the batch size must be at least 1, not {_size}";
        if (_pollInterval <= TimeSpan.Zero)
            yield return $"PollInterval must be positive, not {_pollInterval}";
        if (string.IsNullOrWhiteSpace(Name) || Name.Length > 200)
            yield return "the name must be 1 to 200 characters";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var store = PatternStore.Require(context, Kind);
        var id = $"{context.Route}/{Name}";
        if (_modes[0] == "Batch")
        {
            var batch = new AggregatorCore<T, T>(id, context.Route, Name, _to, g => g.Messages, _key, _size, _size is null, _timeout, null, store,
                context.Services, context.Metrics, _sequence, resequence: true);
            context.Control.AddWorker(new AggregationTimeoutWorker<T, T>(batch, _pollInterval, TimeSpan.FromDays(1)));
            return new AggregatorFilter<T, T>(batch);
        }

        var stream = new StreamResequencer<T>(id, context.Route, Name, _to, _key, _sequence, _timeout, _startAt, store, context.Services, context.Metrics);
        context.Control.AddWorker(new StreamGapWorker<T>(stream, _pollInterval));
        return new StreamResequencerFilter<T>(stream);
    }
}

/// <summary>Thrown for a message whose position was already released or skipped; it goes to the error queue with this reason.</summary>
public sealed class ResequencerException(string message) : Exception(message);

/// <summary>Stream mode: a group row per stream holds the next number to release; held messages wait in the messages table.</summary>
sealed partial class StreamResequencer<T>(
    string id, string route, string name, string to, Func<T, string>? key, Func<T, long>? sequenceOf, TimeSpan gapTimeout, long startAt,
    PatternStore store, IServiceProvider services, PatternMetrics metrics)
    where T : class
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public string Id => id;
    public string Route => route;
    public IServiceProvider Services => services;
    public ILogger Logger { get; } = services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.Resequencer") ?? NullLogger.Instance;

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("resequence");
        scope.Add("mode", "stream");
        scope.Add("to", to);
        scope.Add("gapTimeout", gapTimeout.ToString());
    }

    public async Task AddAsync(ConsumeContext<T> context)
    {
        var sequence = MessageSequence.Of(context);
        var stream = key is not null ? key(context.Message) : sequence?.Id ?? "";
        if (string.IsNullOrEmpty(stream) && key is null)
            throw new Filtering.MessageRejectedException($"Route '{route}', {name}: the message carries no {MessageSequence.IdHeader} header and the resequencer has no CorrelateBy");
        long position = sequenceOf is not null
            ? sequenceOf(context.Message)
            : sequence?.Index ?? throw new Filtering.MessageRejectedException(
                $"Route '{route}', {name}: the message carries no {MessageSequence.IndexHeader} header and the resequencer has no SequenceBy");
        var messageId = context.MessageId ?? NewId.NextGuid();
        var body = JsonSerializer.Serialize(context.Message, Json);

        await store.InTransactionAsync(services, async (db, tables) =>
        {
            var cancel = context.CancellationToken;
            await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                INSERT INTO {{tables.Groups}} (aggregator, group_key, created_at, message_count, next_sequence)
                VALUES ({0}, {1}, now(), 0, {2}) ON CONFLICT DO NOTHING
                """, id, stream, startAt), cancel).ConfigureAwait(false);
            var group = (await db.Set<AggregationGroupState>()
                .FromSql(PatternSql.Of($"SELECT * FROM {tables.Groups} WHERE aggregator = {{0}} AND group_key = {{1}} FOR UPDATE", id, stream))
                .AsNoTracking().ToListAsync(cancel).ConfigureAwait(false)).Single();
            var added = await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                INSERT INTO {{tables.Messages}} (aggregator, group_key, message_id, sequence, body, received_at)
                VALUES ({0}, {1}, {2}, {3}, {4}, now()) ON CONFLICT DO NOTHING
                """, id, stream, messageId, position, body), cancel).ConfigureAwait(false);
            if (added == 0)
                return 0;
            if (position < group.NextSequence)
            {
                throw new ResequencerException(
                    $"Route '{route}', {name}: stream '{stream}' already released or skipped position {position} (next is {group.NextSequence}); this message arrived too late");
            }

            await ReleaseAsync(db, tables, stream, group.NextSequence, (message, index) =>
                RouteSender.SendAsync(context, to, message, send => Stamp(send, stream, index)), cancel).ConfigureAwait(false);
            return 0;
        }, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>Skips gaps older than the gap timeout and releases what follows them; returns how many streams moved.</summary>
    public Task<int> SkipExpiredGapsAsync(IBus bus, CancellationToken cancellationToken) =>
        store.InTransactionAsync(services, async (db, tables) =>
        {
            var stalled = await db.Set<AggregationGroupState>()
                .FromSql(PatternSql.Of($$"""
                    SELECT g.* FROM {{tables.Groups}} g
                    WHERE g.aggregator = {0} AND EXISTS (
                        SELECT 1 FROM {{tables.Messages}} m
                        WHERE m.aggregator = g.aggregator AND m.group_key = g.group_key AND m.released_at IS NULL
                          AND m.received_at <= now() - make_interval(secs => {1}))
                    LIMIT 50 FOR UPDATE SKIP LOCKED
                    """, id, gapTimeout.TotalSeconds))
                .AsNoTracking().ToListAsync(cancellationToken).ConfigureAwait(false);
            var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{to}")).ConfigureAwait(false);
            foreach (var group in stalled)
            {
                var lowest = await db.Set<AggregationMessageState>().AsNoTracking()
                    .Where(m => m.Aggregator == id && m.GroupKey == group.GroupKey && m.ReleasedAt == null)
                    .MinAsync(m => m.Sequence, cancellationToken).ConfigureAwait(false) ?? group.NextSequence;
                LogSkipped(Logger, route, name, group.GroupKey, group.NextSequence, lowest - 1);
                var history = MessageHistory.Single($"{name} (gap skipped)");
                await ReleaseAsync(db, tables, group.GroupKey, lowest, (message, index) => endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
                {
                    send.Headers.Set(MessageHistory.Header, history);
                    Stamp(send, group.GroupKey, index);
                }), cancellationToken), cancellationToken).ConfigureAwait(false);
            }

            return stalled.Count;
        }, cancellationToken);

    /// <summary>Releases consecutive held messages from <paramref name="next"/> on, then stores the new next number.</summary>
    async Task ReleaseAsync(DbContext db, PatternTables tables, string stream, long next, Func<T, long, Task> send, CancellationToken cancellationToken)
    {
        var held = await db.Set<AggregationMessageState>().AsNoTracking()
            .Where(m => m.Aggregator == id && m.GroupKey == stream && m.ReleasedAt == null && m.Sequence >= next)
            .OrderBy(m => m.Sequence).ToListAsync(cancellationToken).ConfigureAwait(false);
        foreach (var row in held)
        {
            if (row.Sequence != next)
                break;
            var message = JsonSerializer.Deserialize<T>(row.Body, Json)
                          ?? throw new InvalidOperationException($"Route '{route}', {name}: a held message of stream '{stream}' reads as null");
            await send(message, next).ConfigureAwait(false);
            await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                UPDATE {{tables.Messages}} SET released_at = now(), body = ''
                WHERE aggregator = {0} AND group_key = {1} AND message_id = {2}
                """, id, stream, row.MessageId), cancellationToken).ConfigureAwait(false);
            metrics.Forwarded(route, to);
            next++;
        }

        await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
            UPDATE {{tables.Groups}} SET next_sequence = {0}, message_count = message_count + 1
            WHERE aggregator = {1} AND group_key = {2}
            """, next, id, stream), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes released messages older than a day (kept that long to recognize redeliveries).</summary>
    public Task<int> CleanupAsync(CancellationToken cancellationToken) =>
        store.RunAsync(services, async (db, tables) =>
        {
            var deleted = await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                DELETE FROM {{tables.Messages}} WHERE aggregator = {0} AND released_at < now() - interval '1 day'
                """, id), cancellationToken).ConfigureAwait(false);
            var held = await db.Set<AggregationMessageState>().LongCountAsync(m => m.Aggregator == id && m.ReleasedAt == null, cancellationToken).ConfigureAwait(false);
            metrics.ReportBacklog(id, held);
            return deleted;
        });

    static void Stamp(SendContext send, string stream, long index)
    {
        send.Headers.Set(MessageSequence.IdHeader, null);
        send.Headers.Set(MessageSequence.SizeHeader, null);
        send.Headers.Set(MessageSequence.IndexHeader, null);
        send.Headers.Set(ResequencerHeaders.Stream, stream);
        send.Headers.Set(ResequencerHeaders.Position, index.ToString(CultureInfo.InvariantCulture));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Route {Route}, {Name}: stream {Stream} waited too long for positions {From}..{To}; skipped them")]
    static partial void LogSkipped(ILogger logger, string route, string name, string stream, long from, long to);
}

/// <summary>Headers on messages a stream resequencer released.</summary>
public static class ResequencerHeaders
{
    /// <summary>The stream key.</summary>
    public const string Stream = "Integration-Resequencer-Stream";

    /// <summary>The message's position in its stream.</summary>
    public const string Position = "Integration-Resequencer-Position";
}

sealed class StreamResequencerFilter<T>(StreamResequencer<T> resequencer) : IFilter<ConsumeContext<T>>
    where T : class
{
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return resequencer.AddAsync(context);
    }

    public void Probe(ProbeContext context) => resequencer.Probe(context);
}

sealed partial class StreamGapWorker<T>(StreamResequencer<T> resequencer, TimeSpan pollInterval) : IRouteWorker
    where T : class
{
    public string Name => $"Route '{resequencer.Route}', {resequencer.Id} gaps";

    public async Task RunAsync(IBus bus, CancellationToken stopping)
    {
        var nextCleanup = DateTime.UtcNow;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                // A sweep over the table: the housekeeping leader does it when one is elected.
                if (!resequencer.Services.HousekeepingMayRun("resequencer-gaps"))
                {
                    await Task.Delay(pollInterval, stopping).ConfigureAwait(false);
                    continue;
                }

                await resequencer.SkipExpiredGapsAsync(bus, stopping).ConfigureAwait(false);
                if (DateTime.UtcNow >= nextCleanup)
                {
                    await resequencer.CleanupAsync(stopping).ConfigureAwait(false);
                    nextCleanup = DateTime.UtcNow.AddMinutes(1);
                }
            }
            catch (Exception exception) when (!stopping.IsCancellationRequested)
            {
                LogFailed(resequencer.Logger, exception, Name);
            }

            await Task.Delay(pollInterval, stopping).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Worker}: skipping expired gaps failed; retrying on the next poll")]
    static partial void LogFailed(ILogger logger, Exception exception, string worker);
}
