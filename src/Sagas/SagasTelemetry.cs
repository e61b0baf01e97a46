using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Sagas;

/// <summary>
/// The library's <see cref="ActivitySource"/> and the name of its meter, both <c>Integration.Sagas</c>. The instruments
/// (<c>integration.sagas.conflicts</c>, <c>integration.sagas.conflicts_exhausted</c>, <c>integration.scheduler.scheduled</c>,
/// <c>integration.scheduler.cancelled</c>, <c>integration.scheduler.delivered</c>) are created per container from its
/// <see cref="IMeterFactory"/>, so two hosts in one process each have their own.
/// </summary>
public static class SagasTelemetry
{
    /// <summary>Name of the activity source and the meter.</summary>
    public const string Name = "Integration.Sagas";

    /// <summary>Traces saga repository attempts and scheduler work.</summary>
    public static readonly ActivitySource ActivitySource = new(Name);
}

/// <summary>One container's saga and scheduler instruments (registered as a singleton; the meter is disposed with the container).</summary>
sealed class SagasMetrics
{
    public SagasMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(SagasTelemetry.Name);
        Conflicts = meter.CreateCounter<long>("integration.sagas.conflicts", description: "Saga messages processed again after a concurrency conflict");
        ConflictsExhausted = meter.CreateCounter<long>("integration.sagas.conflicts_exhausted", description: "Saga messages that still conflicted after the retry limit");
        Scheduled = meter.CreateCounter<long>("integration.scheduler.scheduled", description: "Messages scheduled in the durable scheduler");
        Cancelled = meter.CreateCounter<long>("integration.scheduler.cancelled", description: "Scheduled messages cancelled before delivery");
        Delivered = meter.CreateCounter<long>("integration.scheduler.delivered", description: "Scheduled messages delivered at their time");
    }

    public Counter<long> Conflicts { get; }

    public Counter<long> ConflictsExhausted { get; }

    public Counter<long> Scheduled { get; }

    public Counter<long> Cancelled { get; }

    public Counter<long> Delivered { get; }
}
