using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Integration.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Operations;

/// <summary>One failed message as the failure views show it: where it failed, why, and a preview of its body.</summary>
sealed record FailedMessage(string Queue, string? MessageId, string? CorrelationId, string? MessageType, string? ExceptionType, string? Reason,
    string? StackTrace, string? RouteStep, DateTimeOffset? FaultedAt, string? ContentType, IReadOnlyDictionary<string, string?> Headers, int BodyBytes,
    string Body);

/// <summary>Failed messages of one error queue that share their exception type, message type and route step.</summary>
sealed record FailureGroup(string Id, string Queue, string SourceQueue, string? ExceptionType, string? MessageType, string? RouteStep, int Count,
    DateTimeOffset? FirstSeen, DateTimeOffset? LastSeen, FailedMessage Example);

/// <summary>Which failed messages to act on: a group, a filter, or both (every condition given must hold).</summary>
sealed record FailureFilter(string? GroupId = null, string? Queue = null, string? MessageType = null, DateTimeOffset? From = null, DateTimeOffset? To = null,
    string? CorrelationId = null, string? Reason = null)
{
    public bool IsEmpty => GroupId is null && Queue is null && MessageType is null && From is null && To is null && CorrelationId is null && Reason is null;

    public bool Matches(FailedMessage message) =>
        (GroupId is null || FailedMessageService.GroupIdOf(message) == GroupId)
        && (Queue is null || message.Queue == Queue)
        && (MessageType is null || message.MessageType?.Contains(MessageType, StringComparison.OrdinalIgnoreCase) == true)
        && (From is null || message.FaultedAt >= From)
        && (To is null || message.FaultedAt <= To)
        && (CorrelationId is null || message.CorrelationId == CorrelationId)
        && (Reason is null || message.Reason?.Contains(Reason, StringComparison.OrdinalIgnoreCase) == true);
}

/// <summary>Changes to a failed message before it is retried: a new body, and headers to set (a null value removes one).</summary>
sealed record FailedMessageEdit(string? Body, IReadOnlyDictionary<string, string?>? Headers);

/// <summary>
/// The failed messages of every <c>&lt;queue&gt;_error</c> queue, grouped by exception type, message type and route step
/// (ServicePulse's failure groups), and the ways out of an error queue: retry (back to <c>&lt;queue&gt;</c>), edit and
/// retry, archive (to the message store), discard.
/// <para>
/// No path loses or doubles a message. Each move is one AMQP transaction on one channel — the publish to the source queue
/// and the acknowledgement of the error copy are committed together: the broker applies both or neither. A host killed
/// before the commit leaves the message in its error queue (its delivery was never acknowledged, so the broker requeues
/// it), a host killed after it leaves it in its source queue only. Every retried copy carries
/// <see cref="RetryIdHeader"/> (error queue, message id and the fault time) so a consumer's inbox, or an operator, can
/// recognise a retried message.
/// </para>
/// </summary>
sealed class FailedMessageService(IOptions<RabbitMqOptions> options, DeadLetterService deadLetters, MessageStore store, IServiceScopeFactory scopes,
    OperationsDatabase database, TimeProvider time)
{
    /// <summary>Header of a retried copy: which failed message it is (<c>{error queue}/{message id}/{fault time}</c>).</summary>
    public const string RetryIdHeader = "Integration-Retry-Id";

    /// <summary>Header of a retried copy: the error queue it came from.</summary>
    public const string RetriedFromHeader = "Integration-Replayed-From";

    /// <summary>Header of an edited copy: the message store id of the archived original.</summary>
    public const string EditedFromHeader = "Integration-Edited-From-Store";

    /// <summary>Prefix of the message store "exchange" failed messages are archived under: <c>archive:{error queue}</c>.</summary>
    public const string ArchivePrefix = "archive:";

    /// <summary>Most messages read from one error queue to build its groups.</summary>
    public const int ScanLimit = 10_000;

    const string Suffix = DeadLetterService.ErrorSuffix;
    const int BodyPreview = 4096;

    RabbitMqOptions Settings => options.Value;

    /// <summary>The group id of a message: <c>{error queue}.{hash of exception type, message type and route step}</c>.</summary>
    public static string GroupIdOf(FailedMessage message)
    {
        var key = $"{message.ExceptionType}\n{message.MessageType}\n{message.RouteStep}";
        return $"{message.Queue}.{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..10]}";
    }

    /// <summary>The error queue a group id names.</summary>
    public static string? QueueOfGroup(string groupId)
    {
        var dot = groupId.LastIndexOf('.');
        return dot > 0 && groupId[..dot].EndsWith(Suffix, StringComparison.Ordinal) ? groupId[..dot] : null;
    }

    /// <summary>Every failure group of every error queue (or only of <paramref name="queue"/>), largest first. Reading leaves the messages in place.</summary>
    public async Task<IReadOnlyList<FailureGroup>> GroupsAsync(string? queue, CancellationToken cancellationToken)
    {
        var groups = new List<FailureGroup>();
        foreach (var errorQueue in await ErrorQueuesAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            var messages = await PeekAsync(errorQueue, ScanLimit, _ => true, cancellationToken).ConfigureAwait(false);
            groups.AddRange(messages.GroupBy(GroupIdOf).Select(g =>
            {
                var first = g.First();
                var times = g.Select(m => m.FaultedAt).OfType<DateTimeOffset>().ToList();
                return new FailureGroup(g.Key, errorQueue, errorQueue[..^Suffix.Length], first.ExceptionType, first.MessageType, first.RouteStep, g.Count(),
                    times.Count == 0 ? null : times.Min(), times.Count == 0 ? null : times.Max(), first);
            }));
        }

        return groups.OrderByDescending(g => g.Count).ThenBy(g => g.Id, StringComparer.Ordinal).ToList();
    }

    /// <summary>Up to <paramref name="take"/> messages matching <paramref name="filter"/>, left in place.</summary>
    public async Task<IReadOnlyList<FailedMessage>> FindAsync(FailureFilter filter, int take, CancellationToken cancellationToken)
    {
        var found = new List<FailedMessage>();
        foreach (var errorQueue in await ErrorQueuesAsync(Scope(filter), cancellationToken).ConfigureAwait(false))
        {
            found.AddRange(await PeekAsync(errorQueue, ScanLimit, filter.Matches, cancellationToken).ConfigureAwait(false));
            if (found.Count >= take)
                break;
        }

        return found.Take(take).ToList();
    }

    /// <summary>
    /// Moves up to <paramref name="max"/> messages matching <paramref name="filter"/> back to their source queues, each in
    /// its own transaction (see the class summary). <paramref name="progress"/> hears each one moved.
    /// </summary>
    public async Task<int> RetryAsync(FailureFilter filter, int max, IProgress<int>? progress, CancellationToken cancellationToken)
    {
        var moved = 0;
        foreach (var errorQueue in await ErrorQueuesAsync(Scope(filter), cancellationToken).ConfigureAwait(false))
        {
            if (moved >= max)
                break;
            var source = errorQueue[..^Suffix.Length];
            moved += await MoveAsync(errorQueue, filter.Matches, max - moved, async (channel, message, info) =>
            {
                await channel.BasicPublishAsync("", source, mandatory: true, RetryProperties(message.BasicProperties, info, null), message.Body, cancellationToken)
                    .ConfigureAwait(false);
                progress?.Report(1);
            }, requireQueue: source, cancellationToken).ConfigureAwait(false);
        }

        return moved;
    }

    /// <summary>
    /// Archives the failed message <paramref name="messageId"/> of <paramref name="errorQueue"/> in the message store, then
    /// publishes the edited copy to the source queue and acknowledges the original in one transaction. Returns the store
    /// id of the archived original, or null when no such message waits in the error queue.
    /// </summary>
    public async Task<long?> EditAndRetryAsync(string errorQueue, string messageId, FailedMessageEdit edit, CancellationToken cancellationToken)
    {
        var source = errorQueue[..^Suffix.Length];
        long? archived = null;
        var moved = await MoveAsync(errorQueue, m => m.MessageId == messageId, 1, async (channel, message, info) =>
        {
            archived = await ArchiveAsync(errorQueue, message, cancellationToken).ConfigureAwait(false);
            var properties = RetryProperties(message.BasicProperties, info, edit.Headers);
            properties.Headers![EditedFromHeader] = archived.Value.ToString(CultureInfo.InvariantCulture);
            var body = edit.Body is null ? message.Body : Encoding.UTF8.GetBytes(edit.Body);
            await channel.BasicPublishAsync("", source, mandatory: true, properties, body, cancellationToken).ConfigureAwait(false);
        }, requireQueue: source, cancellationToken).ConfigureAwait(false);
        return moved == 0 ? null : archived;
    }

    /// <summary>Removes matching messages from their error queues; with <paramref name="archive"/> each is first stored in the message store.</summary>
    public async Task<int> RemoveAsync(FailureFilter filter, bool archive, CancellationToken cancellationToken)
    {
        var removed = 0;
        foreach (var errorQueue in await ErrorQueuesAsync(Scope(filter), cancellationToken).ConfigureAwait(false))
        {
            removed += await MoveAsync(errorQueue, filter.Matches, int.MaxValue, async (_, message, _) =>
            {
                if (archive)
                    await ArchiveAsync(errorQueue, message, cancellationToken).ConfigureAwait(false);
            }, requireQueue: null, cancellationToken).ConfigureAwait(false);
        }

        return removed;
    }

    /// <summary>Whether <paramref name="queue"/> exists.</summary>
    public async Task<bool> QueueExistsAsync(string queue, CancellationToken cancellationToken)
    {
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        return await ExistsAsync(connection, queue, cancellationToken).ConfigureAwait(false);
    }

    static string? Scope(FailureFilter filter) => filter.GroupId is { } id ? QueueOfGroup(id) ?? filter.Queue : filter.Queue;

    async Task<IReadOnlyList<string>> ErrorQueuesAsync(string? queue, CancellationToken cancellationToken)
    {
        if (queue is not null)
            return [queue];
        // Every error queue, whatever depth the management API reports: its statistics lag the queues by seconds.
        return (await deadLetters.ListQueuesAsync(cancellationToken).ConfigureAwait(false)).Select(q => q.Queue).ToList();
    }

    async Task<List<FailedMessage>> PeekAsync(string errorQueue, int limit, Func<FailedMessage, bool> match, CancellationToken cancellationToken)
    {
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        var found = new List<FailedMessage>();
        if (!await ExistsAsync(connection, errorQueue, cancellationToken).ConfigureAwait(false))
            return found;
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        // Every fetched message stays unacknowledged; closing the channel gives them all back to the queue.
        for (var i = 0; i < limit; i++)
        {
            var message = await channel.BasicGetAsync(errorQueue, autoAck: false, cancellationToken).ConfigureAwait(false);
            if (message is null)
                break;
            var info = Describe(errorQueue, message);
            if (match(info))
                found.Add(info);
        }

        await channel.CloseAsync(cancellationToken).ConfigureAwait(false);
        return found;
    }

    /// <summary>
    /// Takes matching messages out of <paramref name="errorQueue"/>: for each, <paramref name="act"/> runs (publishing
    /// what it publishes on the transactional channel), then the error copy is acknowledged and the transaction committed.
    /// Messages that do not match are given back at the end (and by the broker, should the host die first).
    /// </summary>
    async Task<int> MoveAsync(string errorQueue, Func<FailedMessage, bool> match, int max, Func<IChannel, BasicGetResult, FailedMessage, Task> act,
        string? requireQueue, CancellationToken cancellationToken)
    {
        if (!errorQueue.EndsWith(Suffix, StringComparison.Ordinal))
            throw new ArgumentException($"'{errorQueue}' is not an error queue (its name must end in {Suffix})", nameof(errorQueue));
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        if (!await ExistsAsync(connection, errorQueue, cancellationToken).ConfigureAwait(false))
            return 0;
        if (requireQueue is not null && !await ExistsAsync(connection, requireQueue, cancellationToken).ConfigureAwait(false))
            throw new InvalidOperationException($"The source queue '{requireQueue}' of '{errorQueue}' does not exist: nothing was moved");

        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        // A publish the broker could not route (the source queue was deleted mid-run) comes back before the commit's answer.
        var returned = new List<(BasicProperties Properties, byte[] Body)>();
        channel.BasicReturnAsync += (_, back) =>
        {
            lock (returned)
                returned.Add((new BasicProperties(back.BasicProperties), back.Body.ToArray()));
            return Task.CompletedTask;
        };
        await channel.TxSelectAsync(cancellationToken).ConfigureAwait(false);
        var depth = (await channel.QueueDeclarePassiveAsync(errorQueue, cancellationToken).ConfigureAwait(false)).MessageCount;
        var held = new List<ulong>();
        var moved = 0;
        try
        {
            for (var i = 0; i < depth && moved < max; i++)
            {
                var message = await channel.BasicGetAsync(errorQueue, autoAck: false, cancellationToken).ConfigureAwait(false);
                if (message is null)
                    break;
                var info = Describe(errorQueue, message);
                if (!match(info))
                {
                    held.Add(message.DeliveryTag);
                    continue;
                }

                await act(channel, message, info).ConfigureAwait(false);
                await channel.BasicAckAsync(message.DeliveryTag, multiple: false, cancellationToken).ConfigureAwait(false);
                // The publish and the ack become visible together, or (host killed before this line) not at all.
                await channel.TxCommitAsync(cancellationToken).ConfigureAwait(false);
                if (Returned(returned) is { Count: > 0 } back)
                {
                    // Put it back where it was: the error queue keeps it, with its headers and body.
                    foreach (var (properties, body) in back)
                        await channel.BasicPublishAsync("", errorQueue, mandatory: false, properties, body, CancellationToken.None).ConfigureAwait(false);
                    await channel.TxCommitAsync(CancellationToken.None).ConfigureAwait(false);
                    throw new InvalidOperationException($"The broker could not route a retried message to '{requireQueue}' (was it deleted?); it is back in '{errorQueue}'; stopped after {moved} message(s)");
                }

                moved++;
            }
        }
        catch when (channel.IsOpen)
        {
            // Whatever this message's step published is not committed: roll it back, so nothing is in both queues.
            await channel.TxRollbackAsync(CancellationToken.None).ConfigureAwait(false);
            throw;
        }
        finally
        {
            if (channel.IsOpen)
            {
                foreach (var tag in held)
                    await channel.BasicNackAsync(tag, multiple: false, requeue: true, CancellationToken.None).ConfigureAwait(false);
                await channel.TxCommitAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }

        return moved;
    }

    static List<(BasicProperties Properties, byte[] Body)> Returned(List<(BasicProperties Properties, byte[] Body)> returned)
    {
        lock (returned)
        {
            var copy = returned.ToList();
            returned.Clear();
            return copy;
        }
    }

    BasicProperties RetryProperties(IReadOnlyBasicProperties original, FailedMessage info, IReadOnlyDictionary<string, string?>? edits)
    {
        var headers = new Dictionary<string, object?>(original.Headers ?? new Dictionary<string, object?>(), StringComparer.Ordinal);
        foreach (var (name, value) in edits ?? new Dictionary<string, string?>())
        {
            if (value is null)
                headers.Remove(name);
            else
                headers[name] = value;
        }

        headers[RetriedFromHeader] = info.Queue;
        headers["Integration-Replayed-At"] = time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);
        headers[RetryIdHeader] = $"{info.Queue}/{info.MessageId}/{info.FaultedAt?.ToString("O", CultureInfo.InvariantCulture)}";
        return new BasicProperties(original) { Headers = headers, Persistent = true };
    }

    async Task<long> ArchiveAsync(string errorQueue, BasicGetResult message, CancellationToken cancellationToken)
    {
        var delivery = new BasicDeliverEventArgs("", message.DeliveryTag, message.Redelivered, message.Exchange, message.RoutingKey, message.BasicProperties,
            message.Body, cancellationToken);
        var stored = MessageStoreConsumer.ToStored(delivery, time.GetUtcNow());
        stored.Exchange = ArchivePrefix + errorQueue;
        await store.AddAsync(stored, cancellationToken).ConfigureAwait(false);
        // Archived already (an earlier attempt died before its commit): the row kept is the original all the same.
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        return await db.Set<StoredMessage>().AsNoTracking().Where(m => m.Exchange == stored.Exchange && m.MessageId == stored.MessageId).Select(m => m.Id)
            .FirstAsync(cancellationToken).ConfigureAwait(false);
    }

    internal static FailedMessage Describe(string errorQueue, BasicGetResult message)
    {
        var properties = message.BasicProperties;
        var headers = (properties.Headers ?? new Dictionary<string, object?>()).ToDictionary(h => h.Key, h => Text(h.Value), StringComparer.Ordinal);
        string? Header(string name) => headers.TryGetValue(name, out var value) ? value : null;
        var body = message.Body.Span;
        string? envelopeType = null, envelopeCorrelation = null, envelopeId = null;
        if (properties.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) == true)
        {
            try
            {
                using var envelope = JsonDocument.Parse(message.Body);
                var root = envelope.RootElement;
                if (root.ValueKind == JsonValueKind.Object)
                {
                    envelopeId = root.TryGetProperty("messageId", out var id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
                    envelopeCorrelation = root.TryGetProperty("correlationId", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() : null;
                    if (root.TryGetProperty("messageType", out var types) && types.ValueKind == JsonValueKind.Array && types.GetArrayLength() > 0)
                        envelopeType = types[0].GetString();
                }
            }
            catch (JsonException)
            {
                // A body that is not JSON is still a failed message; it is described by its headers.
            }
        }

        return new FailedMessage(errorQueue, properties.MessageId ?? envelopeId, properties.CorrelationId ?? envelopeCorrelation ?? Header("CorrelationId"),
            Header("MT-Fault-MessageType") ?? envelopeType ?? properties.Type ?? Header("MT-MessageType"),
            Header("MT-Fault-ExceptionType"), Header("MT-Fault-Message") ?? Header("Integration-Failure-Reason"), Clip(Header("MT-Fault-StackTrace"), 4000),
            RouteStep(Header(Integration.Patterns.History.MessageHistory.Header)) ?? Header("Integration-Failed-Recipient") ?? Header("MT-Fault-ConsumerType"),
            DateTimeOffset.TryParse(Header("MT-Fault-Timestamp"), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null,
            properties.ContentType, headers, body.Length, Encoding.UTF8.GetString(body[..Math.Min(body.Length, BodyPreview)]));
    }

    /// <summary>The last step of the message history header: where in its route the message was when it failed.</summary>
    static string? RouteStep(string? history)
    {
        if (string.IsNullOrWhiteSpace(history))
            return null;
        try
        {
            using var document = JsonDocument.Parse(history);
            if (document.RootElement.ValueKind != JsonValueKind.Array || document.RootElement.GetArrayLength() == 0)
                return null;
            var last = document.RootElement[document.RootElement.GetArrayLength() - 1];
            return last.TryGetProperty("step", out var step) ? step.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    static string? Clip(string? text, int length) => text is { Length: > 0 } && text.Length > length ? text[..length] : text;

    static string? Text(object? value) => value switch
    {
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        AmqpTimestamp timestamp => DateTimeOffset.FromUnixTimeSeconds(timestamp.UnixTime).ToString("O", CultureInfo.InvariantCulture),
        null => null,
        IEnumerable<object> list => string.Join(",", list.Select(Text)),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture),
    };

    async Task<IConnection> ConnectAsync(CancellationToken cancellationToken) =>
        await RabbitMqConnections.Factory(Settings).CreateConnectionAsync("failed-messages", cancellationToken).ConfigureAwait(false);

    static async Task<bool> ExistsAsync(IConnection connection, string queue, CancellationToken cancellationToken)
    {
        await using var probe = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await probe.QueueDeclarePassiveAsync(queue, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return false;
        }
    }
}
