namespace Integration.Outbox.Batching;

/// <summary>
/// Applies a batch of messages (a scoped service: it gets the scope's DbContext and <see cref="Writing.IOutbox"/>). It writes
/// through them and returns; the batch step saves, records every message in the inbox and commits, all in one
/// transaction. It must not save or commit itself, and must be safe to run again on a subset: when the batch fails the
/// step rolls it back and applies the messages again in smaller batches (in a new scope) to find the one that fails.
/// </summary>
/// <typeparam name="TMessage">The consumed message.</typeparam>
public interface IBatchHandler<TMessage>
    where TMessage : class
{
    /// <summary>
    /// Checked for each message before it joins a batch: a reason (not null) sends the message to <c>&lt;queue&gt;_error</c>
    /// with it in the <c>MT-Fault-Message</c> header, without touching the batch. The default accepts every message.
    /// </summary>
    string? Validate(TMessage message) => null;

    /// <summary>Applies <paramref name="messages"/> (in arrival order; duplicates already removed) to the scope's DbContext.</summary>
    Task HandleAsync(IReadOnlyList<TMessage> messages, CancellationToken cancellationToken);
}

/// <summary>Thrown for a message its handler's <see cref="IBatchHandler{TMessage}.Validate"/> rejected, or that has no MessageId when one is required.</summary>
public sealed class BatchMessageRejectedException : Exception
{
    /// <summary>Creates the exception with the reason.</summary>
    public BatchMessageRejectedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with the reason and its cause.</summary>
    public BatchMessageRejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception.</summary>
    public BatchMessageRejectedException()
    {
    }
}
