namespace Integration.Outbox;

/// <summary>
/// Outbox settings, bound from <c>Integration:Outbox</c> by <c>AddIntegrationOutbox&lt;TDbContext&gt;()</c> and validated at
/// start: a bad value stops the host with a message naming the full key (<c>Integration:Outbox:BatchSize must be 1 to 10000, not 0</c>).
/// </summary>
public sealed class OutboxOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string Section = "Integration:Outbox";

    /// <summary>Run the delivery relay in this process (several processes may run it on one database).</summary>
    public bool RunRelay { get; set; } = true;

    /// <summary>Fallback poll when no NOTIFY arrives (a NOTIFY wakes the relay at once).</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Messages claimed at once (one claim, one mark per batch).</summary>
    public int BatchSize { get; set; } = 100;

    /// <summary>Transactions of a batch in flight at once (each one's messages stay in order: the next is sent after the previous one's confirm).</summary>
    public int DeliveryConcurrency { get; set; } = 100;

    /// <summary>
    /// Send what this process commits straight from memory right after the commit (no claim statement, no NOTIFY round
    /// trip): the rows are written leased to this relay, which marks them delivered after the confirms. Whatever it does not
    /// deliver (a failed send, a crash) the claims deliver: after 2 s, or after <see cref="LockDuration"/> for a crash. Off:
    /// every message is claimed from the table (the default). Off by default for now: with it on, a RabbitMQ cluster node
    /// SIGKILLed under load left MassTransit's publishing stuck for the rest of the fault spec's window in 3 of 4 runs (every
    /// send, claimed ones too, cancelled inside MassTransit's connection retry), which the claims alone recover from (docs/outbox.md).
    /// </summary>
    public bool DirectDelivery { get; set; }

    /// <summary>
    /// Messages waiting for direct delivery at most. An async save that finds the queue full waits up to one second for room;
    /// a commit that still finds it full (or a sync save) is claimed from the table.
    /// </summary>
    public int DirectDeliveryLimit { get; set; } = 2000;

    /// <summary>How long a claim lasts; a relay that dies loses its claims after this.</summary>
    public TimeSpan LockDuration { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest wait for one broker confirm.</summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Delivered messages are deleted after this (by the cleanup, every <see cref="CleanupInterval"/>). Zero deletes each
    /// message as it is marked delivered, in the mark's own statement: the cheapest for the database, nothing kept to look at.</summary>
    public TimeSpan RetentionPeriod { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Inbox rows are deleted after this; a duplicate arriving later than this is not recognized.</summary>
    public TimeSpan InboxRetention { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often cleanup runs.</summary>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Rows deleted per cleanup statement (small batches: no long locks).</summary>
    public int CleanupBatchSize { get; set; } = 1000;

    /// <summary>Health turns Degraded when the oldest undelivered message is older than this.</summary>
    public TimeSpan DegradedAfter { get; set; } = TimeSpan.FromMinutes(1);

    internal IEnumerable<string> Validate(string section = Section)
    {
        if (PollInterval <= TimeSpan.Zero) yield return $"{section}:PollInterval must be positive, not {PollInterval}";
        if (BatchSize is < 1 or > 10_000) yield return $"{section}:BatchSize must be 1 to 10000, not {BatchSize}";
        if (DeliveryConcurrency is < 1 or > 256) yield return $"{section}:DeliveryConcurrency must be 1 to 256, not {DeliveryConcurrency}";
        if (DirectDeliveryLimit is < 1 or > 1_000_000) yield return $"{section}:DirectDeliveryLimit must be 1 to 1000000, not {DirectDeliveryLimit}";
        if (LockDuration <= SendTimeout) yield return $"{section}:LockDuration ({LockDuration}) must be longer than SendTimeout ({SendTimeout})";
        if (RetentionPeriod < TimeSpan.Zero) yield return $"{section}:RetentionPeriod must not be negative";
        if (InboxRetention < TimeSpan.Zero) yield return $"{section}:InboxRetention must not be negative";
        if (CleanupInterval <= TimeSpan.Zero) yield return $"{section}:CleanupInterval must be positive, not {CleanupInterval}";
        if (DegradedAfter <= TimeSpan.Zero) yield return $"{section}:DegradedAfter must be positive, not {DegradedAfter}";
        if (CleanupBatchSize is < 1 or > 100_000) yield return $"{section}:CleanupBatchSize must be 1 to 100000, not {CleanupBatchSize}";
    }
}
