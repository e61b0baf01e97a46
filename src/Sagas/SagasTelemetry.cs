using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Sagas;

/// <summary>The library's <see cref="ActivitySource"/> and <see cref="Meter"/>, both named <c>Integration.Sagas</c>.</summary>
public static class SagasTelemetry
{
    /// <summary>Name of the activity source and the meter.</summary>
    public const string Name = "Integration.Sagas";

    /// <summary>Traces saga repository attempts and scheduler work.</summary>
    public static readonly ActivitySource ActivitySource = new(Name);

    internal static readonly Meter Meter = new(Name);

    internal static readonly Counter<long> Conflicts = Meter.CreateCounter<long>(
        "integration.sagas.conflicts", description: "Saga messages processed again after a concurrency conflict");

    internal static readonly Counter<long> ConflictsExhausted = Meter.CreateCounter<long>(
        "integration.sagas.conflicts_exhausted", description: "Saga messages that still conflicted after the retry limit");

    internal static readonly Counter<long> Scheduled = Meter.CreateCounter<long>(
        "integration.scheduler.scheduled", description: "Messages scheduled in the durable scheduler");

    internal static readonly Counter<long> Cancelled = Meter.CreateCounter<long>(
        "integration.scheduler.cancelled", description: "Scheduled messages cancelled before delivery");

    internal static readonly Counter<long> Delivered = Meter.CreateCounter<long>(
        "integration.scheduler.delivered", description: "Scheduled messages delivered at their time");
}
