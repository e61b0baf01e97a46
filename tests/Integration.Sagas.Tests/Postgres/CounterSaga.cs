using Integration.Outbox.Model;
using Integration.Sagas.Postgres;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Integration.Sagas.Tests.Postgres;

public sealed record CounterStarted(Guid CounterId, string Name);

public sealed record CounterIncremented(Guid CounterId);

public sealed record CounterStopped(Guid CounterId);

public sealed record CounterRenamed(string OldName, string NewName);

/// <summary>The machine writes an audit row through raw SQL on the saga's DbContext, then fails if asked to.</summary>
public sealed record CounterAudited(Guid CounterId, bool Fail);

/// <summary>Published after each applied increment with the count it produced: a lost update shows as a missing or repeated value.</summary>
public sealed record Counted(Guid CounterId, int Count);

public sealed class CounterState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public string Name { get; set; } = "";
    public int Count { get; set; }
}

public sealed class CounterMachine : MassTransitStateMachine<CounterState>
{
    public CounterMachine()
    {
        InstanceState(x => x.CurrentState);
        Event(() => Started, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Incremented, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Stopped, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Audited, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Renamed, e =>
        {
            e.CorrelateBy((saga, m) => saga.Name == m.Message.OldName);
            e.SelectId(_ => NewId.NextGuid());
        });

        Initially(
            When(Started).Then(c => c.Saga.Name = c.Message.Name).TransitionTo(Counting),
            When(Incremented).Then(c => c.Saga.Count++).Publish(c => new Counted(c.Saga.CorrelationId, c.Saga.Count)).TransitionTo(Counting));
        During(Counting,
            Ignore(Started),
            When(Incremented).Then(c => c.Saga.Count++).Publish(c => new Counted(c.Saga.CorrelationId, c.Saga.Count)),
            When(Renamed).Then(c => c.Saga.Name = c.Message.NewName),
            When(Audited).ThenAsync(async c =>
            {
                var db = c.GetServiceOrCreateInstance<CounterDbContext>();
                await db.Database.ExecuteSqlRawAsync("INSERT INTO counter_audits (correlation_id) VALUES ({0})", c.Saga.CorrelationId);
                if (c.Message.Fail)
                    throw new InvalidOperationException("audit failed after its write");
                c.Saga.Count++;
            }),
            When(Stopped).Finalize());
        SetCompletedWhenFinalized();
    }

    public State Counting { get; private set; } = null!;
    public Event<CounterStarted> Started { get; private set; } = null!;
    public Event<CounterIncremented> Incremented { get; private set; } = null!;
    public Event<CounterStopped> Stopped { get; private set; } = null!;
    public Event<CounterRenamed> Renamed { get; private set; } = null!;
    public Event<CounterAudited> Audited { get; private set; } = null!;
}

/// <summary>The counter's state, and the outbox tables for the specs that write the saga's messages through the outbox.</summary>
public sealed class CounterDbContext(DbContextOptions<CounterDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.AddIntegrationSagaState<CounterState>("counter_state", e =>
        {
            e.Property(x => x.CurrentState).HasMaxLength(64);
            e.Property(x => x.Name).HasMaxLength(100);
            e.HasIndex(x => x.Name);
        }, schema: "sagas");
        modelBuilder.AddIntegrationOutbox("sagas");
    }
}
