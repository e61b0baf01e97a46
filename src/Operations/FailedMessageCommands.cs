using System.Text.Json;

namespace Integration.Operations;

/// <summary><c>failures.list</c> (Viewer): failed messages of every error queue (or of one), grouped by exception type, message type and route step.</summary>
/// <param name="Target">Only this error queue (<c>&lt;queue&gt;_error</c>); null: all of them.</param>
public sealed record ListFailures(string? Target = null);

/// <summary><c>failures.show</c> (Viewer): the messages of one failure group, left in place.</summary>
/// <param name="Target">The group id (from <c>failures.list</c>).</param>
/// <param name="Take">How many messages.</param>
public sealed record ShowFailures(string Target, int Take = 50);

/// <summary>
/// <c>failures.retry</c> (Operator): move failed messages back to the queue they failed on — a group, a filter, or a group
/// narrowed by a filter. Needs a group or at least one condition: it never retries every error queue by accident.
/// </summary>
/// <param name="Target">A group id; null: every group the filter matches.</param>
/// <param name="Queue">Only this error queue.</param>
/// <param name="MessageType">Part of the message type.</param>
/// <param name="From">Failed at or after.</param>
/// <param name="To">Failed at or before.</param>
/// <param name="CorrelationId">Correlation id.</param>
/// <param name="Reason">Text in the failure reason (the exception message).</param>
/// <param name="Max">At most this many messages (a client retrying in batches shows progress).</param>
public sealed record RetryFailures(string? Target = null, string? Queue = null, string? MessageType = null, DateTimeOffset? From = null, DateTimeOffset? To = null,
    string? CorrelationId = null, string? Reason = null, int Max = int.MaxValue);

/// <summary>
/// <c>failures.edit-retry</c> (Operator): change one failed message's body or headers and retry it. The original is
/// archived in the message store first (exchange <c>archive:{error queue}</c>); this command, with the new body and
/// headers, is the audit record of the edit.
/// </summary>
/// <param name="Target">The error queue.</param>
/// <param name="MessageId">The failed message.</param>
/// <param name="Body">The new body, whole (a JSON body must stay valid JSON); null keeps it.</param>
/// <param name="Headers">Headers to set.</param>
/// <param name="RemoveHeaders">Headers to remove, comma-separated.</param>
public sealed record EditAndRetryFailure(string Target, string MessageId, string? Body = null, IReadOnlyDictionary<string, string>? Headers = null,
    string? RemoveHeaders = null);

/// <summary><c>failures.discard</c> (Operator): delete the messages of a failure group; needs the group id again as <paramref name="Confirm"/>.</summary>
/// <param name="Target">The group id.</param>
/// <param name="Confirm">The group id, repeated.</param>
public sealed record DiscardFailures(string Target, string? Confirm = null);

/// <summary><c>failures.archive</c> (Operator): move the messages of a failure group to the message store (exchange <c>archive:{error queue}</c>); needs the group id again as <paramref name="Confirm"/>.</summary>
/// <param name="Target">The group id.</param>
/// <param name="Confirm">The group id, repeated.</param>
public sealed record ArchiveFailures(string Target, string? Confirm = null);

/// <summary>Failure groups over <see cref="FailedMessageService"/>.</summary>
sealed class FailedMessageCommands(FailedMessageService service) :
    IControlHandler<ListFailures>, IControlHandler<ShowFailures>, IControlHandler<RetryFailures>, IControlHandler<EditAndRetryFailure>,
    IControlHandler<DiscardFailures>, IControlHandler<ArchiveFailures>
{
    const string Suffix = DeadLetterService.ErrorSuffix;

    public async Task<ControlResult> HandleAsync(ListFailures command, CancellationToken cancellationToken)
    {
        if (command.Target is { } queue && !queue.EndsWith(Suffix, StringComparison.Ordinal))
            return ControlResult.Invalid($"failures.list: '{queue}' is not an error queue (name ending in {Suffix})");
        var groups = await service.GroupsAsync(command.Target, cancellationToken).ConfigureAwait(false);
        return ControlResult.Ok($"{groups.Count} failure group(s), {groups.Sum(g => g.Count)} message(s)", groups);
    }

    public async Task<ControlResult> HandleAsync(ShowFailures command, CancellationToken cancellationToken)
    {
        if (FailedMessageService.QueueOfGroup(command.Target) is null)
            return BadGroup("failures.show", command.Target);
        var messages = await service.FindAsync(new FailureFilter(command.Target), Math.Clamp(command.Take, 1, 1000), cancellationToken).ConfigureAwait(false);
        return messages.Count == 0
            ? ControlResult.NotFound($"No failed message in group '{command.Target}'")
            : ControlResult.Ok($"{messages.Count} message(s) of group '{command.Target}' (left in place)", messages);
    }

    public async Task<ControlResult> HandleAsync(RetryFailures command, CancellationToken cancellationToken)
    {
        var filter = new FailureFilter(command.Target, command.Queue, command.MessageType, command.From, command.To, command.CorrelationId, command.Reason);
        if (filter.IsEmpty)
            return ControlResult.Invalid("failures.retry needs a group id or a filter (queue, messageType, from/to, correlationId, reason): it never retries every error queue");
        if (command.Target is { } id && FailedMessageService.QueueOfGroup(id) is null)
            return BadGroup("failures.retry", id);
        if (command.Queue is { } queue && !queue.EndsWith(Suffix, StringComparison.Ordinal))
            return ControlResult.Invalid($"failures.retry: '{queue}' is not an error queue (name ending in {Suffix})");
        if (command.Max < 1)
            return ControlResult.Invalid($"failures.retry: max must be at least 1, not {command.Max}");
        try
        {
            var moved = await service.RetryAsync(filter, command.Max, null, cancellationToken).ConfigureAwait(false);
            return ControlResult.Ok($"Moved {moved} failed message(s) back to their source queue", new { moved });
        }
        catch (InvalidOperationException exception)
        {
            return ControlResult.NotFound(exception.Message);
        }
    }

    public async Task<ControlResult> HandleAsync(EditAndRetryFailure command, CancellationToken cancellationToken)
    {
        if (!command.Target.EndsWith(Suffix, StringComparison.Ordinal))
            return ControlResult.Invalid($"failures.edit-retry needs an error queue (name ending in {Suffix}) as its target, not '{command.Target}'");
        if (string.IsNullOrWhiteSpace(command.MessageId))
            return ControlResult.Invalid("failures.edit-retry needs argument 'messageId'");
        var remove = (command.RemoveHeaders ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (command.Body is null && command.Headers is not { Count: > 0 } && remove.Length == 0)
            return ControlResult.Invalid("failures.edit-retry changes nothing: give 'body', 'headers' or 'removeHeaders' (failures.retry retries unchanged)");
        var message = (await service.FindAsync(new FailureFilter(Queue: command.Target), int.MaxValue, cancellationToken).ConfigureAwait(false))
            .FirstOrDefault(m => m.MessageId == command.MessageId);
        if (message is null)
            return ControlResult.NotFound($"No failed message '{command.MessageId}' in '{command.Target}'");
        if (command.Body is not null && message.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) == true && !IsJson(command.Body, out var error))
            return ControlResult.Invalid($"failures.edit-retry: the message is {message.ContentType} and the new body is not valid JSON: {error}");

        var headers = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var name in remove)
            headers[name] = null;
        foreach (var (name, value) in command.Headers ?? new Dictionary<string, string>())
            headers[name] = value;
        try
        {
            var archived = await service.EditAndRetryAsync(command.Target, command.MessageId, new FailedMessageEdit(command.Body, headers), cancellationToken)
                .ConfigureAwait(false);
            return archived is null
                ? ControlResult.NotFound($"No failed message '{command.MessageId}' in '{command.Target}'")
                : ControlResult.Ok($"Edited '{command.MessageId}' and moved it to '{command.Target[..^Suffix.Length]}'; the original is stored message {archived}",
                    new { moved = 1, archivedId = archived });
        }
        catch (InvalidOperationException exception)
        {
            return ControlResult.NotFound(exception.Message);
        }
    }

    public Task<ControlResult> HandleAsync(DiscardFailures command, CancellationToken cancellationToken) =>
        RemoveAsync("failures.discard", command.Target, command.Confirm, archive: false, cancellationToken);

    public Task<ControlResult> HandleAsync(ArchiveFailures command, CancellationToken cancellationToken) =>
        RemoveAsync("failures.archive", command.Target, command.Confirm, archive: true, cancellationToken);

    async Task<ControlResult> RemoveAsync(string action, string group, string? confirm, bool archive, CancellationToken cancellationToken)
    {
        if (FailedMessageService.QueueOfGroup(group) is null)
            return BadGroup(action, group);
        if (confirm != group)
            return ControlResult.Invalid($"{action} needs confirmation: repeat the group id as argument 'confirm' (confirm={group})");
        var removed = await service.RemoveAsync(new FailureFilter(group), archive, cancellationToken).ConfigureAwait(false);
        return archive
            ? ControlResult.Ok($"Archived {removed} message(s) of group '{group}' in the message store", new { archived = removed })
            : ControlResult.Ok($"Discarded {removed} message(s) of group '{group}'", new { discarded = removed });
    }

    static ControlResult BadGroup(string action, string id) =>
        ControlResult.Invalid($"{action}: '{id}' is not a failure group id (they look like '<queue>_error.<hash>', see GET /api/control/failures)");

    static bool IsJson(string text, out string? error)
    {
        try
        {
            using var _ = JsonDocument.Parse(text);
            error = null;
            return true;
        }
        catch (JsonException exception)
        {
            error = exception.Message;
            return false;
        }
    }
}
