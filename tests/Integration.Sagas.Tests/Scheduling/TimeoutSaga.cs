using MassTransit;

namespace Integration.Sagas.Tests.Scheduling;

public sealed record TimeoutStarted(Guid Id, string Owner);

public sealed record TimedOut(Guid Id);

public sealed record TimeoutExpired(Guid Id, string Owner);

/// <summary>A saga that schedules its own timeout through the durable scheduler (state-machine <c>Schedule(...)</c>).</summary>
public sealed class TimeoutState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public string Owner { get; set; } = "";
    public Guid? TimeoutTokenId { get; set; }
}

public sealed class TimeoutMachine : MassTransitStateMachine<TimeoutState>
{
    public TimeoutMachine()
    {
        InstanceState(x => x.CurrentState);
        Event(() => Started, e => e.CorrelateById(m => m.Message.Id));
        Schedule(() => Timeout, s => s.TimeoutTokenId, s =>
        {
            s.Delay = TimeSpan.FromSeconds(2);
            s.Received = r => r.CorrelateById(m => m.Message.Id);
        });
        Initially(When(Started).Then(c => c.Saga.Owner = c.Message.Owner).Schedule(Timeout, c => new TimedOut(c.Saga.CorrelationId)).TransitionTo(Waiting));
        During(Waiting, When(Timeout!.Received).Publish(c => new TimeoutExpired(c.Saga.CorrelationId, c.Saga.Owner)).TransitionTo(Expired));
    }

    public State Waiting { get; private set; } = null!;
    public State Expired { get; private set; } = null!;
    public Event<TimeoutStarted> Started { get; private set; } = null!;
    public Schedule<TimeoutState, TimedOut>? Timeout { get; private set; }
}
