using System.Globalization;
using System.Text.Json;
using Integration.Outbox.Leases;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using Integration.Patterns.Postgres.Storage;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.Postgres.Aggregation;

/// <summary>What completed an aggregation group; recorded on the result (<see cref="AggregatedGroup{T}.CompletedBy"/> and the <c>Integration-Aggregation-CompletedBy</c> header).</summary>
public enum AggregationCompletion
{
    /// <summary>The group reached its size (a fixed size, or the sequence size the splitter wrote).</summary>
    Size,

    /// <summary>The group's timeout passed first.</summary>
    Timeout,

    /// <summary>The completion predicate returned true.</summary>
    Predicate,
}

/// <summary>A completed group, handed to the aggregation function.</summary>
/// <param name="Key">The correlation key.</param>
/// <param name="Messages">Its messages, by sequence index when they have one, else in arrival order.</param>
/// <param name="CompletedBy">What completed it.</param>
public sealed record AggregatedGroup<T>(string Key, IReadOnlyList<T> Messages, AggregationCompletion CompletedBy);

/// <summary>How an aggregator correlates messages and when a group is complete. At least one completion is required.</summary>
public interface IAggregatorConfigurator<T>
    where T : class
{
    /// <summary>The correlation key of each message. Default: the sequence id a splitter wrote (<see cref="MessageSequence"/>).</summary>
    IAggregatorConfigurator<T> CorrelateBy(Func<T, string> key);

    /// <summary>Completes a group when it holds <paramref name="size"/> messages.</summary>
    IAggregatorConfigurator<T> CompleteOnSize(int size);

    /// <summary>Completes a group when it holds as many messages as the sequence headers' size (every part of a split).</summary>
    IAggregatorConfigurator<T> CompleteOnSequenceSize();

    /// <summary>
    /// Completes a group <paramref name="timeout"/> after its first message, with what it has by then. Durable: the
    /// deadline is stored with the group and a poller completes expired groups, also after a restart.
    /// </summary>
    IAggregatorConfigurator<T> CompleteAfter(TimeSpan timeout);

    /// <summary>Completes a group when <paramref name="predicate"/> returns true for its messages (checked as each one joins).</summary>
    IAggregatorConfigurator<T> CompleteWhen(Func<IReadOnlyList<T>, bool> predicate);

    /// <summary>How often expired groups are looked for (default 1 s).</summary>
    TimeSpan PollInterval { set; }

    /// <summary>How long completed groups are kept to recognize redelivered messages (default 1 day); then deleted.</summary>
    TimeSpan Retention { set; }
}

/// <summary>Thrown for a message whose group has already completed; it goes to the error queue with this reason.</summary>
public sealed class AggregationGroupClosedException(string message) : Exception(message);

/// <summary>Aggregator (EIP; Camel <c>aggregate</c>) with its state in PostgreSQL.</summary>
public static class AggregatorExtensions
{
    /// <summary>Header with the group key on an aggregate.</summary>
    public const string KeyHeader = "Integration-Aggregation-Key";

    /// <summary>Header with what completed the group: <c>Size</c>, <c>Timeout</c> or <c>Predicate</c>.</summary>
    public const string CompletedByHeader = "Integration-Aggregation-CompletedBy";

    /// <summary>Header with the number of messages aggregated.</summary>
    public const string CountHeader = "Integration-Aggregation-Count";

    /// <summary>
    /// Header with the reason on messages the timeout poller parked in <c>&lt;route&gt;_error</c> because the aggregation
    /// function failed for their group (the group is then marked <c>Failed</c>).
    /// </summary>
    public const string FailureReasonHeader = "Integration-Failure-Reason";

    /// <summary>
    /// Collects messages into groups by correlation key, in PostgreSQL (state survives restarts; several consumers add to
    /// a group one at a time under a row lock). When a group completes (size, timeout or predicate), <paramref name="aggregate"/>
    /// turns it into one message, sent to queue <paramref name="to"/> with the <c>Integration-Aggregation-*</c> headers.
    /// The route ends here. Needs <c>services.AddIntegrationPatternStore&lt;TDbContext&gt;()</c> and <c>modelBuilder.AddIntegrationPatterns()</c>.
    /// </summary>
    public static IRouteConfigurator<T> Aggregate<T, TOut>(this IRouteConfigurator<T> route, Action<IAggregatorConfigurator<T>> configure,
        Func<AggregatedGroup<T>, TOut> aggregate, string to, string? name = null)
        where T : class
        where TOut : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(configure);
        var specification = new AggregatorSpecification<T, TOut>(aggregate, to, name ?? $"aggregate:{to}");
        configure(specification);
        return route.AddStep(specification);
    }
}

/// <summary>Specification of an aggregator.</summary>
internal sealed class AggregatorSpecification<T, TOut> : IRouteStepSpecification<T>, IAggregatorConfigurator<T>
    where T : class
    where TOut : class
{
    readonly Func<AggregatedGroup<T>, TOut>? _aggregate;
    readonly string _to;
    Func<T, string>? _key;
    int? _size;
    bool _sequenceSize;
    TimeSpan? _timeout;
    Func<IReadOnlyList<T>, bool>? _predicate;
    TimeSpan _pollInterval = TimeSpan.FromSeconds(1);
    TimeSpan _retention = TimeSpan.FromDays(1);

    internal AggregatorSpecification(Func<AggregatedGroup<T>, TOut>? aggregate, string to, string name)
    {
        _aggregate = aggregate;
        _to = to;
        Name = name;
    }

    /// <inheritdoc />
    public string Kind => "Aggregate";

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public TimeSpan PollInterval { set => _pollInterval = value; }

    /// <inheritdoc />
    public TimeSpan Retention { set => _retention = value; }

    /// <inheritdoc />
    public IAggregatorConfigurator<T> CorrelateBy(Func<T, string> key)
    {
        _key = key;
        return this;
    }

    /// <inheritdoc />
    public IAggregatorConfigurator<T> CompleteOnSize(int size)
    {
        _size = size;
        return this;
    }

    /// <inheritdoc />
    public IAggregatorConfigurator<T> CompleteOnSequenceSize()
    {
        _sequenceSize = true;
        return this;
    }

    /// <inheritdoc />
    public IAggregatorConfigurator<T> CompleteAfter(TimeSpan timeout)
    {
        _timeout = timeout;
        return this;
    }

    /// <inheritdoc />
    public IAggregatorConfigurator<T> CompleteWhen(Func<IReadOnlyList<T>, bool> predicate)
    {
        _predicate = predicate;
        return this;
    }

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (_aggregate is null)
            yield return "the aggregation function is missing";
        if (!RouteSender.IsValidQueueName(_to))
            yield return $"destination '{_to}' is not a valid queue name";
        if (string.IsNullOrWhiteSpace(Name) || Name.Length > 200)
            yield return "the name must be 1 to 200 characters";
        if (_size is null && !_sequenceSize && _timeout is null && _predicate is null)
            yield return "no completion: set CompleteOnSize, CompleteOnSequenceSize, CompleteAfter or CompleteWhen, or groups would never complete";
        if (_size is < 1)
            yield return $"CompleteOnSize must be at least 1, not {_size}";
        if (_size is not null && _sequenceSize)
            yield return "CompleteOnSize and CompleteOnSequenceSize exclude each other";
        if (_timeout is { } timeout && timeout <= TimeSpan.Zero)
            yield return $"CompleteAfter must be positive, not {timeout}";
        if (_pollInterval <= TimeSpan.Zero)
            yield return $"PollInterval must be positive, not {_pollInterval}";
        if (_retention <= TimeSpan.Zero)
            yield return $"Retention must be positive, not {_retention}";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var store = PatternStore.Require(context, Kind);
        var aggregate = _aggregate!;
        var aggregator = new AggregatorCore<T, TOut>($"{context.Route}/{Name}", context.Route, Name, _to, g => [aggregate(g)], _key, _size, _sequenceSize, _timeout,
            _predicate, store, context.Services, context.Metrics);
        context.Control.AddWorker(new AggregationTimeoutWorker<T, TOut>(aggregator, _pollInterval, _retention));
        return new AggregatorFilter<T, TOut>(aggregator);
    }
}

/// <summary>The aggregator's state handling, shared by its filter and its timeout poller.</summary>
/// <remarks>
/// The batch resequencer is the same machine with <paramref name="resequence"/> set: a completed group is released as its
/// messages, one by one in sequence order, each with sequence headers of its position.
/// </remarks>
internal sealed partial class AggregatorCore<T, TOut>(
    string aggregator, string route, string name, string to, Func<AggregatedGroup<T>, IReadOnlyList<TOut>> aggregate, Func<T, string>? key, int? size, bool sequenceSize,
    TimeSpan? timeout, Func<IReadOnlyList<T>, bool>? predicate, PatternStore store, IServiceProvider services, PatternMetrics metrics, Func<T, long>? sequenceOf = null,
    bool resequence = false)
    where T : class
    where TOut : class
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public string Id => aggregator;
    public string Route => route;
    public string To => to;
    public TimeSpan? Timeout => timeout;
    public IServiceProvider Services => services;
    public ILogger Logger { get; } = services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.Aggregator") ?? NullLogger.Instance;

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("aggregate");
        scope.Add("to", to);
        scope.Add("size", size?.ToString(CultureInfo.InvariantCulture) ?? (sequenceSize ? "sequence" : "none"));
        scope.Add("timeout", timeout?.ToString() ?? "none");
        scope.Add("predicate", predicate is not null);
    }

    public async Task AddAsync(ConsumeContext<T> context)
    {
        var sequence = MessageSequence.Of(context);
        var groupKey = key is not null
            ? key(context.Message)
            : sequence?.Id ?? throw new Filtering.MessageRejectedException(
                $"Route '{route}', {name}: the message has no correlation: it carries no {MessageSequence.IdHeader} header and the aggregator has no CorrelateBy");
        if (string.IsNullOrEmpty(groupKey) || groupKey.Length > 500)
            throw new Filtering.MessageRejectedException($"Route '{route}', {name}: the correlation key must be 1 to 500 characters");
        if (sequenceSize && sequence is null)
            throw new Filtering.MessageRejectedException($"Route '{route}', {name}: completes on the sequence size, but the message carries no {MessageSequence.SizeHeader} header");
        var messageId = context.MessageId ?? NewId.NextGuid();
        var body = JsonSerializer.Serialize(context.Message, Json);

        await store.InTransactionAsync(services, async (db, tables) =>
        {
            var cancel = context.CancellationToken;
            if (timeout is { } t)
            {
                await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                    INSERT INTO {{tables.Groups}} (aggregator, group_key, created_at, expires_at, message_count, next_sequence)
                    VALUES ({0}, {1}, now(), now() + make_interval(secs => {2}), 0, 0) ON CONFLICT DO NOTHING
                    """, aggregator, groupKey, t.TotalSeconds), cancel).ConfigureAwait(false);
            }
            else
            {
                await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                    INSERT INTO {{tables.Groups}} (aggregator, group_key, created_at, message_count, next_sequence)
                    VALUES ({0}, {1}, now(), 0, 0) ON CONFLICT DO NOTHING
                    """, aggregator, groupKey), cancel).ConfigureAwait(false);
            }

            var group = (await db.Set<AggregationGroupState>()
                .FromSql(PatternSql.Of($"SELECT * FROM {tables.Groups} WHERE aggregator = {{0}} AND group_key = {{1}} FOR UPDATE", aggregator, groupKey))
                .AsNoTracking().ToListAsync(cancel).ConfigureAwait(false)).Single();

            long? position = sequenceOf is not null ? sequenceOf(context.Message) : sequence?.Index;
            var added = await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                INSERT INTO {{tables.Messages}} (aggregator, group_key, message_id, sequence, body, received_at)
                VALUES ({0}, {1}, {2}, {3}, {4}, now()) ON CONFLICT DO NOTHING
                """, aggregator, groupKey, messageId, position, body), cancel).ConfigureAwait(false);
            if (added == 0)
            {
                LogDuplicate(Logger, route, name, messageId, groupKey);
                return 0;
            }

            if (group.CompletedAt is not null)
            {
                throw new AggregationGroupClosedException(
                    $"Route '{route}', {name}: group '{groupKey}' was already completed by {group.CompletedBy} at {group.CompletedAt:O}; this message arrived late");
            }

            int? target = size ?? (sequenceSize ? group.ExpectedSize ?? sequence!.Size : null);
            await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                UPDATE {{tables.Groups}} SET message_count = message_count + 1, expected_size = COALESCE(expected_size, {0})
                WHERE aggregator = {1} AND group_key = {2}
                """, target, aggregator, groupKey), cancel).ConfigureAwait(false);

            AggregationCompletion? completion = null;
            IReadOnlyList<T>? messages = null;
            if (target is { } n && group.MessageCount + 1 >= n)
                completion = AggregationCompletion.Size;
            else if (predicate is not null)
            {
                messages = await LoadAsync(db, tables, groupKey, cancel).ConfigureAwait(false);
                if (predicate(messages))
                    completion = AggregationCompletion.Predicate;
            }

            if (completion is { } by)
            {
                messages ??= await LoadAsync(db, tables, groupKey, cancel).ConfigureAwait(false);
                var results = Aggregate(groupKey, messages, by);
                for (var i = 0; i < results.Count; i++)
                {
                    var index = i;
                    await RouteSender.SendAsync(context, to, results[i], send => Stamp(send, groupKey, by, messages.Count, index, results.Count)).ConfigureAwait(false);
                }

                await MarkCompletedAsync(db, tables, groupKey, by, cancel).ConfigureAwait(false);
                metrics.Forwarded(route, to);
            }

            return 0;
        }, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>Completes up to <paramref name="batch"/> expired groups; returns how many.</summary>
    public Task<int> CompleteExpiredAsync(IBus bus, int batch, CancellationToken cancellationToken) =>
        store.InTransactionAsync(services, async (db, tables) =>
        {
            var expired = await db.Set<AggregationGroupState>()
                .FromSql(PatternSql.Of($$"""
                    SELECT * FROM {{tables.Groups}}
                    WHERE aggregator = {0} AND completed_at IS NULL AND expires_at <= now()
                    ORDER BY expires_at LIMIT {1} FOR UPDATE SKIP LOCKED
                    """, aggregator, batch))
                .AsNoTracking().ToListAsync(cancellationToken).ConfigureAwait(false);
            foreach (var group in expired)
            {
                var messages = await LoadAsync(db, tables, group.GroupKey, cancellationToken).ConfigureAwait(false);
                IReadOnlyList<TOut> results;
                try
                {
                    results = Aggregate(group.GroupKey, messages, AggregationCompletion.Timeout);
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    // No consumed message to fail: park the group's messages in the route's error queue, with the reason.
                    await ParkAsync(bus, group.GroupKey, messages, exception, cancellationToken).ConfigureAwait(false);
                    await MarkCompletedAsync(db, tables, group.GroupKey, "Failed", cancellationToken).ConfigureAwait(false);
                    continue;
                }

                var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{to}")).ConfigureAwait(false);
                var history = MessageHistory.Single($"{name} (timeout)");
                for (var i = 0; i < results.Count; i++)
                {
                    var index = i;
                    await endpoint.Send(results[i], Pipe.Execute<SendContext<TOut>>(send =>
                    {
                        send.Headers.Set(MessageHistory.Header, history);
                        Stamp(send, group.GroupKey, AggregationCompletion.Timeout, messages.Count, index, results.Count);
                    }), cancellationToken).ConfigureAwait(false);
                }

                await MarkCompletedAsync(db, tables, group.GroupKey, AggregationCompletion.Timeout, cancellationToken).ConfigureAwait(false);
                metrics.Forwarded(route, to);
            }

            return expired.Count;
        }, cancellationToken);

    /// <summary>Deletes groups completed longer than <paramref name="retention"/> ago (their messages with them); reports the open groups.</summary>
    public Task<int> CleanupAsync(TimeSpan retention, CancellationToken cancellationToken) =>
        store.RunAsync(services, async (db, tables) =>
        {
            var deleted = await db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
                DELETE FROM {{tables.Groups}}
                WHERE aggregator = {0} AND completed_at IS NOT NULL AND completed_at < now() - make_interval(secs => {1})
                """, aggregator, retention.TotalSeconds), cancellationToken).ConfigureAwait(false);
            var open = await db.Set<AggregationGroupState>().LongCountAsync(g => g.Aggregator == aggregator && g.CompletedAt == null, cancellationToken).ConfigureAwait(false);
            metrics.ReportBacklog(aggregator, open);
            return deleted;
        });

    IReadOnlyList<TOut> Aggregate(string groupKey, IReadOnlyList<T> messages, AggregationCompletion by)
    {
        var results = aggregate(new AggregatedGroup<T>(groupKey, messages, by));
        return results is null || results.Any(r => r is null)
            ? throw new InvalidOperationException($"Route '{route}', {name}: the aggregation function returned null")
            : results;
    }

    void Stamp(SendContext send, string groupKey, AggregationCompletion by, int count, int index, int released)
    {
        if (resequence)
            new MessageSequence(groupKey, index, released).WriteTo(send.Headers);
        else
        {
            send.Headers.Set(MessageSequence.IdHeader, null);
            send.Headers.Set(MessageSequence.IndexHeader, null);
            send.Headers.Set(MessageSequence.SizeHeader, null);
        }

        send.Headers.Set(AggregatorExtensions.KeyHeader, groupKey);
        send.Headers.Set(AggregatorExtensions.CompletedByHeader, by.ToString());
        send.Headers.Set(AggregatorExtensions.CountHeader, count.ToString(CultureInfo.InvariantCulture));
    }

    async Task<IReadOnlyList<T>> LoadAsync(DbContext db, PatternTables tables, string groupKey, CancellationToken cancellationToken)
    {
        var rows = await db.Set<AggregationMessageState>()
            .FromSql(PatternSql.Of($"SELECT * FROM {tables.Messages} WHERE aggregator = {{0}} AND group_key = {{1}}", aggregator, groupKey))
            .AsNoTracking().ToListAsync(cancellationToken).ConfigureAwait(false);
        return rows.OrderBy(r => r.Sequence ?? long.MaxValue).ThenBy(r => r.ReceivedAt)
            .Select(r => JsonSerializer.Deserialize<T>(r.Body, Json)
                         ?? throw new InvalidOperationException($"Route '{route}', {name}: a stored message of group '{groupKey}' reads as null"))
            .ToList();
    }

    Task MarkCompletedAsync(DbContext db, PatternTables tables, string groupKey, AggregationCompletion by, CancellationToken cancellationToken) =>
        MarkCompletedAsync(db, tables, groupKey, by.ToString(), cancellationToken);

    async Task ParkAsync(IBus bus, string groupKey, IReadOnlyList<T> messages, Exception exception, CancellationToken cancellationToken)
    {
        var reason = $"Route '{route}', {name}: the aggregation function failed for group '{groupKey}' at its timeout: {exception.GetBaseException().Message}";
        LogParked(Logger, exception, route, name, groupKey, messages.Count);
        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{route}_error")).ConfigureAwait(false);
        foreach (var message in messages)
        {
            await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
            {
                send.Headers.Set(AggregatorExtensions.KeyHeader, groupKey);
                send.Headers.Set(AggregatorExtensions.FailureReasonHeader, reason);
            }), cancellationToken).ConfigureAwait(false);
        }
    }

    Task MarkCompletedAsync(DbContext db, PatternTables tables, string groupKey, string by, CancellationToken cancellationToken) =>
        db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
            UPDATE {{tables.Groups}} SET completed_at = now(), completed_by = {0}
            WHERE aggregator = {1} AND group_key = {2};
            UPDATE {{tables.Messages}} SET body = '' WHERE aggregator = {1} AND group_key = {2};
            """, by, aggregator, groupKey), cancellationToken);

    [LoggerMessage(Level = LogLevel.Error, Message = "Route {Route}, {Name}: the aggregation function failed for group {Group} at its timeout; its {Count} message(s) were parked in the error queue")]
    static partial void LogParked(ILogger logger, Exception exception, string route, string name, string group, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Route {Route}, {Name}: message {MessageId} is already in group {Group}; acknowledged as a duplicate")]
    static partial void LogDuplicate(ILogger logger, string route, string name, Guid messageId, string group);
}

/// <summary>Adds each message to its group; the group's completion sends the aggregate.</summary>
sealed class AggregatorFilter<T, TOut>(AggregatorCore<T, TOut> aggregator) : IFilter<ConsumeContext<T>>
    where T : class
    where TOut : class
{
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return aggregator.AddAsync(context);
    }

    public void Probe(ProbeContext context) => aggregator.Probe(context);
}

/// <summary>Completes expired groups (durable: the deadline is in the table), deletes old completed ones, reports the backlog.</summary>
sealed partial class AggregationTimeoutWorker<T, TOut>(AggregatorCore<T, TOut> aggregator, TimeSpan pollInterval, TimeSpan retention) : IRouteWorker
    where T : class
    where TOut : class
{
    const int Batch = 50;

    public string Name => $"Route '{aggregator.Route}', {aggregator.Id} timeouts";

    public async Task RunAsync(IBus bus, CancellationToken stopping)
    {
        var nextCleanup = DateTime.UtcNow;
        while (!stopping.IsCancellationRequested)
        {
            var completed = 0;
            try
            {
                // A sweep over the table: one host does it, the housekeeping leader when one is elected (groups still
                // complete by size or predicate on every host; a timeout fires within the lease time after a leader dies).
                if (!aggregator.Services.HousekeepingMayRun("aggregator-timeouts"))
                {
                    await Task.Delay(pollInterval, stopping).ConfigureAwait(false);
                    continue;
                }

                if (aggregator.Timeout is not null)
                    completed = await aggregator.CompleteExpiredAsync(bus, Batch, stopping).ConfigureAwait(false);
                if (DateTime.UtcNow >= nextCleanup)
                {
                    await aggregator.CleanupAsync(retention, stopping).ConfigureAwait(false);
                    nextCleanup = DateTime.UtcNow.AddMinutes(1);
                }
            }
            catch (Exception exception) when (!stopping.IsCancellationRequested)
            {
                LogFailed(aggregator.Logger, exception, Name);
            }

            if (completed < Batch)
                await Task.Delay(pollInterval, stopping).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Worker}: completing expired groups failed; retrying on the next poll")]
    static partial void LogFailed(ILogger logger, Exception exception, string worker);
}
