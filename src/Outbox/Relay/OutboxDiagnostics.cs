using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Outbox.Relay;

/// <summary>The outbox's meter and trace source, both <c>Integration.Outbox</c>.</summary>
public static class OutboxDiagnostics
{
    /// <summary>Name of the Meter and ActivitySource.</summary>
    public const string Name = "Integration.Outbox";

    /// <summary>Trace source: one <c>outbox send</c> span per message, a child of the span that wrote the message.</summary>
    public static readonly ActivitySource Source = new(Name);

    static readonly Meter Meter = new(Name);

    /// <summary>Time from the message's commit to the broker's confirm.</summary>
    public static readonly Histogram<double> CommitToSend = Meter.CreateHistogram<double>("integration.outbox.commit_to_send", "ms", "Commit-to-confirm latency");

    /// <summary>Messages delivered.</summary>
    public static readonly Counter<long> Delivered = Meter.CreateCounter<long>("integration.outbox.delivered", "{message}", "Messages delivered by the relay");

    /// <summary>Failed delivery attempts (the transaction is retried).</summary>
    public static readonly Counter<long> Failures = Meter.CreateCounter<long>("integration.outbox.failures", "{transaction}", "Failed delivery attempts");

    internal static OutboxStatistics? Statistics;

    static OutboxDiagnostics()
    {
        Meter.CreateObservableGauge("integration.outbox.undelivered", () => Statistics?.Undelivered ?? 0, "{message}", "Messages waiting for delivery");
        Meter.CreateObservableGauge("integration.outbox.oldest_undelivered_age", () => Statistics?.OldestAge.TotalSeconds ?? 0, "s", "Age of the oldest undelivered message");
    }
}

/// <summary>The backlog as the relay last measured it.</summary>
public sealed class OutboxStatistics
{
    long _undelivered;
    long _oldestTicks;

    /// <summary>Undelivered messages.</summary>
    public long Undelivered => Interlocked.Read(ref _undelivered);

    /// <summary>Age of the oldest undelivered message.</summary>
    public TimeSpan OldestAge => TimeSpan.FromTicks(Interlocked.Read(ref _oldestTicks));

    /// <summary>When it was measured.</summary>
    public DateTimeOffset? MeasuredAt { get; private set; }

    internal void Update(long undelivered, TimeSpan oldest, DateTimeOffset at)
    {
        Interlocked.Exchange(ref _undelivered, undelivered);
        Interlocked.Exchange(ref _oldestTicks, oldest.Ticks);
        MeasuredAt = at;
    }
}
