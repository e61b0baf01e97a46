namespace Integration.Sagas.Postgres;

/// <summary>
/// Settings of the PostgreSQL saga repository, set in code per saga:
/// <c>x.AddSagaStateMachine&lt;M, S&gt;().PostgresRepository&lt;AppDbContext&gt;(o =&gt; o.ConcurrencyMode = SagaConcurrencyMode.Pessimistic)</c>.
/// Checked when the repository is registered; a bad value throws naming the saga and the setting.
/// </summary>
public sealed class PostgresSagaRepositoryOptions
{
    /// <summary>Optimistic (<c>xmin</c> check, retry on conflict) or pessimistic (<c>SELECT … FOR UPDATE</c>). Default optimistic.</summary>
    public SagaConcurrencyMode ConcurrencyMode { get; set; } = SagaConcurrencyMode.Optimistic;

    /// <summary>
    /// How many times a message is processed again after a concurrency conflict (a lost <c>xmin</c> check, a duplicate
    /// insert of the same instance, a serialization failure or a deadlock) before the conflict is thrown to the
    /// endpoint's retry policy and error queue. Default 20; 0 disables retries.
    /// </summary>
    public int ConflictRetryLimit { get; set; } = 20;

    /// <summary>Upper bound of the random delay before a retry; the delay grows with the attempt up to this value. Default 200 ms.</summary>
    public TimeSpan ConflictRetryMaxDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Writes what the saga publishes, sends and schedules into the transactional outbox (<c>Integration.Outbox</c>) in
    /// the same database transaction as the saga's new state, instead of sending it after the commit. Then a crash or a
    /// broker cut between the commit and the sends loses nothing: the relay delivers the rows. Needs the outbox tables
    /// in the saga's DbContext (<c>modelBuilder.AddIntegrationOutbox()</c>) and a relay (<c>AddIntegrationOutbox&lt;T&gt;()</c>).
    /// Default false (messages leave from memory right after the commit).
    /// </summary>
    public bool TransactionalOutbox { get; set; }

    /// <summary>
    /// Instances whose last committed state this process keeps in memory (0, the default: none). An event for a cached
    /// instance skips the <c>SELECT</c>: its <c>UPDATE</c> still carries the cached <c>xmin</c>, so a row another process
    /// changed or deleted meanwhile fails the check, the entry is dropped and the event is processed again from a fresh
    /// read (not counted against <see cref="ConflictRetryLimit"/>). Pays off where one process owns a key at a time: an
    /// endpoint on <c>AddIntegrationPartitionedQueue</c>. Optimistic mode only, and only for sagas mapped to plain
    /// columns (no navigations, owned or complex types); up to 1,000,000.
    /// </summary>
    public int InstanceCacheSize { get; set; }

    /// <summary>
    /// Coalesce the instance reads of concurrent events (optimistic mode): while one <c>SELECT ... WHERE correlation_id =
    /// ANY(...)</c> is in flight, the other events' reads wait and go together in the next one, so a prefetch's worth of
    /// events on distinct instances costs one read, not one each. Each event still writes and commits on its own, guarded
    /// by the row version it was given (a row changed since fails the <c>xmin</c> check and the event is processed again).
    /// Default false. Optimistic mode only, and only for sagas mapped to plain columns (no navigations, owned or complex
    /// types; others read as before).
    /// </summary>
    public bool BatchReads { get; set; }

    internal IEnumerable<string> Validate()
    {
        if (BatchReads && ConcurrencyMode != SagaConcurrencyMode.Optimistic)
            yield return "BatchReads needs ConcurrencyMode Optimistic (pessimistic reads lock the row inside the event's transaction)";
        if (!Enum.IsDefined(ConcurrencyMode))
            yield return $"ConcurrencyMode must be Optimistic or Pessimistic, not {ConcurrencyMode}";
        if (ConflictRetryLimit is < 0 or > 1000)
            yield return $"ConflictRetryLimit must be 0 to 1000, not {ConflictRetryLimit}";
        if (ConflictRetryMaxDelay < TimeSpan.Zero || ConflictRetryMaxDelay > TimeSpan.FromSeconds(30))
            yield return $"ConflictRetryMaxDelay must be 0 to 30 seconds, not {ConflictRetryMaxDelay}";
        if (InstanceCacheSize is < 0 or > 1_000_000)
            yield return $"InstanceCacheSize must be 0 to 1000000, not {InstanceCacheSize}";
        if (InstanceCacheSize > 0 && ConcurrencyMode != SagaConcurrencyMode.Optimistic)
            yield return "InstanceCacheSize needs ConcurrencyMode Optimistic (the cached xmin is what guards the row)";
    }
}
