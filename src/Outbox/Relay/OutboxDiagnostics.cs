using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Outbox.Relay;

/// <summary>
/// The outbox's trace source and meter name, both <c>Integration.Outbox</c>. The instruments are created per container from
/// its <see cref="IMeterFactory"/> (two hosts in one process each have their own): histogram
/// <c>integration.outbox.commit_to_send</c> (ms), counters <c>integration.outbox.delivered</c> and
/// <c>integration.outbox.failures</c>, gauges <c>integration.outbox.undelivered</c> and
/// <c>integration.outbox.oldest_undelivered_age</c> (s); the inbox counts <c>integration.inbox.duplicates</c> on meter
/// <c>Integration.Outbox.Inbox</c>.
/// </summary>
public static class OutboxDiagnostics
{
    /// <summary>Name of the Meter and ActivitySource.</summary>
    public const string Name = "Integration.Outbox";

    /// <summary>Name of the inbox's meter.</summary>
    public const string InboxMeterName = "Integration.Outbox.Inbox";

    /// <summary>Trace source: one <c>outbox send</c> span per message, a child of the span that wrote the message.</summary>
    public static readonly ActivitySource Source = new(Name);
}

/// <summary>One container's outbox and inbox instruments, from its <see cref="IMeterFactory"/> (disposed with it).</summary>
sealed class OutboxMetrics
{
    public OutboxMetrics(IMeterFactory meters, OutboxStatistics statistics)
    {
        var meter = meters.Create(OutboxDiagnostics.Name);
        CommitToSend = meter.CreateHistogram<double>("integration.outbox.commit_to_send", "ms", "Commit-to-confirm latency");
        Delivered = meter.CreateCounter<long>("integration.outbox.delivered", "{message}", "Messages delivered by the relay");
        Failures = meter.CreateCounter<long>("integration.outbox.failures", "{transaction}", "Failed delivery attempts");
        meter.CreateObservableGauge("integration.outbox.undelivered", () => statistics.Undelivered, "{message}", "Messages waiting for delivery");
        meter.CreateObservableGauge("integration.outbox.oldest_undelivered_age", () => statistics.OldestAge.TotalSeconds, "s", "Age of the oldest undelivered message");
        Duplicates = meters.Create(OutboxDiagnostics.InboxMeterName)
            .CreateCounter<long>("integration.inbox.duplicates", "{message}", "Messages the inbox recognized as already consumed");
    }

    /// <summary>Time from the message's commit to the broker's confirm.</summary>
    public Histogram<double> CommitToSend { get; }

    /// <summary>Messages delivered.</summary>
    public Counter<long> Delivered { get; }

    /// <summary>Failed delivery attempts (the transaction is retried).</summary>
    public Counter<long> Failures { get; }

    /// <summary>Duplicates the inbox acknowledged without running the consumer.</summary>
    public Counter<long> Duplicates { get; }
}

/// <summary>The backlog as the relay last measured it.</summary>
sealed class OutboxStatistics
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
