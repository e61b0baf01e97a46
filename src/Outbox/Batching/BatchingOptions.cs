namespace Integration.Outbox.Batching;

/// <summary>
/// Settings of one batch endpoint, bound from <c>Integration:Batching:&lt;queue&gt;</c> by
/// <see cref="BatchRegistrationExtensions.AddIntegrationBatch{TMessage, THandler}"/> and validated at start: a bad value
/// stops the host with a message naming the full key (<c>Integration:Batching:inventory-updates:MessageLimit must be 1 to 1000, not 0</c>).
/// </summary>
public sealed class BatchingOptions
{
    /// <summary>The configuration section the options of queue <c>q</c> are bound from: <c>Integration:Batching:q</c>.</summary>
    public const string Section = "Integration:Batching";

    /// <summary>Most messages applied in one transaction (MassTransit's <c>MessageLimit</c>).</summary>
    public int MessageLimit { get; set; } = 100;

    /// <summary>
    /// Longest wait, from the first message of a batch, for more to join it (MassTransit's <c>TimeLimit</c>); a batch
    /// also closes when <see cref="MessageLimit"/> messages joined.
    /// </summary>
    public TimeSpan TimeLimit { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Batches applied at the same time (MassTransit's <c>ConcurrencyLimit</c>); more collect meanwhile.</summary>
    public int ConcurrencyLimit { get; set; } = 1;

    /// <summary>
    /// A message without a MessageId cannot be recognized when it is redelivered. True (the default): it goes to
    /// <c>&lt;queue&gt;_error</c> saying so. False: it is applied without an inbox record (at least once, not exactly once).
    /// </summary>
    public bool RequireMessageId { get; set; } = true;

    internal IEnumerable<string> Validate(string section)
    {
        if (MessageLimit is < 1 or > 1000) yield return $"{section}:MessageLimit must be 1 to 1000, not {MessageLimit}";
        if (TimeLimit <= TimeSpan.Zero || TimeLimit > TimeSpan.FromMinutes(1))
            yield return $"{section}:TimeLimit must be positive and at most 00:01:00, not {TimeLimit}";
        if (ConcurrencyLimit is < 1 or > 64) yield return $"{section}:ConcurrencyLimit must be 1 to 64, not {ConcurrencyLimit}";
    }

    /// <summary>Messages the endpoint takes at once: one batch being applied per <see cref="ConcurrencyLimit"/>, and the next collecting.</summary>
    internal int InFlight => MessageLimit * (ConcurrencyLimit + 1);
}
