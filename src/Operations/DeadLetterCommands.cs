namespace Integration.Operations;

/// <summary><c>dead-letters.list</c> (Viewer): the error queues, or the messages of one (left in place).</summary>
/// <param name="Target">An error queue; null lists the queues.</param>
/// <param name="Take">How many messages to show.</param>
public sealed record ListDeadLetters(string? Target = null, int Take = 50);

/// <summary><c>dead-letters.replay</c> (Operator): move messages of an error queue back to the queue they failed on.</summary>
/// <param name="Target">The error queue (<c>&lt;queue&gt;_error</c>).</param>
/// <param name="MessageId">Only this message; null: all of them.</param>
public sealed record ReplayDeadLetters(string Target, string? MessageId = null);

/// <summary><c>dead-letters.delete</c> (Operator): delete messages of an error queue; needs the queue's name again as <paramref name="Confirm"/>.</summary>
/// <param name="Target">The error queue.</param>
/// <param name="Confirm">The error queue's name, repeated.</param>
/// <param name="MessageId">Only this message; null: all of them.</param>
public sealed record DeleteDeadLetters(string Target, string? Confirm = null, string? MessageId = null);

/// <summary>Dead letters over <see cref="DeadLetterService"/>.</summary>
sealed class DeadLetterCommands(DeadLetterService service) :
    IControlHandler<ListDeadLetters>, IControlHandler<ReplayDeadLetters>, IControlHandler<DeleteDeadLetters>
{
    const string Suffix = DeadLetterService.ErrorSuffix;

    public async Task<ControlResult> HandleAsync(ListDeadLetters command, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(command.Target))
            return ControlResult.Ok("Error queues", await service.ListQueuesAsync(cancellationToken).ConfigureAwait(false));
        var letters = await service.PeekAsync(command.Target, command.Take, cancellationToken).ConfigureAwait(false);
        return letters is null ? Missing(command.Target) : ControlResult.Ok($"Messages in '{command.Target}' (left in place)", letters);
    }

    public async Task<ControlResult> HandleAsync(ReplayDeadLetters command, CancellationToken cancellationToken)
    {
        if (!command.Target.EndsWith(Suffix, StringComparison.Ordinal))
            return ControlResult.Invalid($"dead-letters.replay needs an error queue (name ending in {Suffix}) as its target");
        var replayed = await service.ReplayAsync(command.Target, command.MessageId, cancellationToken).ConfigureAwait(false);
        return replayed is null ? Missing(command.Target) : ControlResult.Ok($"Replayed {replayed} message(s) to '{command.Target[..^Suffix.Length]}'", new { replayed });
    }

    public async Task<ControlResult> HandleAsync(DeleteDeadLetters command, CancellationToken cancellationToken)
    {
        if (!command.Target.EndsWith(Suffix, StringComparison.Ordinal))
            return ControlResult.Invalid($"dead-letters.delete needs an error queue (name ending in {Suffix}) as its target");
        if (command.Confirm != command.Target)
            return ControlResult.Invalid($"Deleting needs confirmation: repeat the queue name as argument 'confirm' (confirm={command.Target})");
        var deleted = await service.DeleteAsync(command.Target, command.MessageId, cancellationToken).ConfigureAwait(false);
        return deleted is null ? Missing(command.Target) : ControlResult.Ok($"Deleted {deleted} message(s) from '{command.Target}'", new { deleted });
    }

    static ControlResult Missing(string queue) => ControlResult.NotFound($"No queue '{queue}'");
}
