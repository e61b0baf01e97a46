using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Sagas.Postgres;

/// <summary>Settings of the PostgreSQL saga repository.</summary>
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

    /// <summary>How the repository gets the scoped DbContext that maps the saga; set with <see cref="UseDbContext{TDbContext}"/>.</summary>
    public Func<IServiceProvider, DbContext>? DbContext { get; set; }

    /// <summary>Uses the scoped <typeparamref name="TDbContext"/> registered with <c>AddDbContext</c>.</summary>
    public PostgresSagaRepositoryOptions UseDbContext<TDbContext>()
        where TDbContext : DbContext
    {
        DbContext = provider => provider.GetRequiredService<TDbContext>();
        return this;
    }

    /// <summary>Checks the settings; throws with the setting's name when one is out of range.</summary>
    public void Validate()
    {
        if (!Enum.IsDefined(ConcurrencyMode))
            throw new ArgumentOutOfRangeException(nameof(ConcurrencyMode), ConcurrencyMode, "ConcurrencyMode must be Optimistic or Pessimistic");
        if (ConflictRetryLimit is < 0 or > 1000)
            throw new ArgumentOutOfRangeException(nameof(ConflictRetryLimit), ConflictRetryLimit, "ConflictRetryLimit must be 0 to 1000");
        if (ConflictRetryMaxDelay < TimeSpan.Zero || ConflictRetryMaxDelay > TimeSpan.FromSeconds(30))
            throw new ArgumentOutOfRangeException(nameof(ConflictRetryMaxDelay), ConflictRetryMaxDelay, "ConflictRetryMaxDelay must be 0 to 30 seconds");
    }
}
