using System.Text.RegularExpressions;

namespace Integration.Operations;

/// <summary><c>messages.list</c> (Viewer): stored messages, newest first.</summary>
/// <param name="CorrelationId">Correlation or conversation id.</param>
/// <param name="MessageType">Part of the message type.</param>
/// <param name="From">Stored at or after.</param>
/// <param name="To">Stored at or before.</param>
/// <param name="Exchange">The flow (exchange) it was published to.</param>
/// <param name="Take">How many.</param>
public sealed record ListMessages(string? CorrelationId = null, string? MessageType = null, DateTimeOffset? From = null, DateTimeOffset? To = null,
    string? Exchange = null, int Take = 50);

/// <summary><c>messages.replay</c> (Operator): publish stored messages again, each confirmed by the broker. Needs ids or a filter.</summary>
/// <param name="Target">Destination queue; null: the exchange each was first published to.</param>
/// <param name="Ids">Stored message ids.</param>
/// <param name="CorrelationId">Correlation or conversation id.</param>
/// <param name="MessageType">Part of the message type.</param>
/// <param name="From">Stored at or after.</param>
/// <param name="To">Stored at or before.</param>
/// <param name="Exchange">The flow (exchange) it was published to.</param>
/// <param name="Take">At most this many.</param>
public sealed record ReplayMessages(string? Target = null, IReadOnlyList<long>? Ids = null, string? CorrelationId = null, string? MessageType = null,
    DateTimeOffset? From = null, DateTimeOffset? To = null, string? Exchange = null, int Take = 50);

/// <summary>The message store: query and replay.</summary>
sealed partial class MessageStoreCommands(MessageStore store) : IControlHandler<ListMessages>, IControlHandler<ReplayMessages>
{
    public async Task<ControlResult> HandleAsync(ListMessages command, CancellationToken cancellationToken)
    {
        var found = await store.FindAsync(new MessageQuery(command.CorrelationId, command.MessageType, command.From, command.To, command.Exchange, command.Take),
            cancellationToken).ConfigureAwait(false);
        return ControlResult.Ok($"{found.Count} stored message(s), newest first", found.Select(MessageStore.View).ToList());
    }

    public async Task<ControlResult> HandleAsync(ReplayMessages command, CancellationToken cancellationToken)
    {
        if (command.Ids is not { Count: > 0 } && command.CorrelationId is null && command.MessageType is null && command.From is null && command.Exchange is null)
            return ControlResult.Invalid("messages.replay needs 'ids' or a filter (correlationId, messageType, from/to, exchange): it never replays the whole store");
        if (command.Target is { } queue && !QueueName().IsMatch(queue))
            return ControlResult.Invalid($"'{queue}' is not a valid queue name");
        var take = Math.Max(command.Take, command.Ids?.Count ?? 0);
        var found = await store.FindAsync(new MessageQuery(command.CorrelationId, command.MessageType, command.From, command.To, command.Exchange, take,
            command.Ids), cancellationToken).ConfigureAwait(false);
        if (found.Count == 0)
            return ControlResult.NotFound("No stored message matches");
        var replayed = await store.ReplayAsync(found, command.Target, cancellationToken).ConfigureAwait(false);
        return ControlResult.Ok($"Replayed {replayed.Count} message(s) to {(command.Target is null ? "their original exchanges" : $"queue '{command.Target}'")} (each confirmed by the broker)",
            new { replayed = replayed.Count, ids = replayed });
    }

    /// <summary>A RabbitMQ queue name a replay may target: 1 to 255 characters of letters, digits, '-', '_', '.', ':'.</summary>
    [GeneratedRegex("^[A-Za-z0-9_.:-]{1,255}$")]
    private static partial Regex QueueName();
}
