namespace Integration.Sagas.Postgres;

/// <summary>How the PostgreSQL saga repository keeps two messages for the same saga instance from overwriting each other.</summary>
public enum SagaConcurrencyMode
{
    /// <summary>
    /// No lock while the message is processed; the update checks the row's <c>xmin</c> and a conflicting write is retried
    /// from a fresh read. Best when messages for one instance rarely arrive together.
    /// </summary>
    Optimistic,

    /// <summary>
    /// The instance row is read with <c>SELECT … FOR UPDATE</c>, so messages for the same instance wait for each other
    /// inside the database. Best when one instance gets bursts of messages.
    /// </summary>
    Pessimistic,
}
