using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Patterns.Routing;

/// <summary>The library's trace source and meter, both named <c>Integration.Patterns</c>.</summary>
public static class PatternDiagnostics
{
    /// <summary>Name of the ActivitySource and the Meter.</summary>
    public const string Name = "Integration.Patterns";

    /// <summary>One span per route step.</summary>
    public static readonly ActivitySource Source = new(Name);

    static readonly Meter Meter = new(Name);
    static readonly ConcurrentDictionary<string, long> Backlogs = new(StringComparer.Ordinal);

    /// <summary>Messages a step sent on, by route, step and destination.</summary>
    public static readonly Counter<long> Forwarded = Meter.CreateCounter<long>("integration.route.forwarded", "{message}", "Messages a route step sent on");

    /// <summary>Messages a filter dropped (counted and logged), by route.</summary>
    public static readonly Counter<long> Discarded = Meter.CreateCounter<long>("integration.route.discarded", "{message}", "Messages a message filter dropped");

    /// <summary>Wire tap copies that could not be sent (the tapped message went on regardless).</summary>
    public static readonly Counter<long> TapFailures = Meter.CreateCounter<long>("integration.route.wiretap.failures", "{message}", "Wire tap copies that failed");

    /// <summary>Recipient deliveries that failed after their retries and were parked in the error queue.</summary>
    public static readonly Counter<long> RecipientFailures = Meter.CreateCounter<long>("integration.route.recipient.failures", "{message}", "Recipient deliveries that failed");

    /// <summary>
    /// What the stateful patterns hold in PostgreSQL, by store (<c>{route}/{step}</c> or <c>claims</c>): open aggregation
    /// groups, held resequencer messages, unclaimed claim checks. Refreshed once a minute by their background workers.
    /// </summary>
    public static readonly ObservableGauge<long> Backlog = Meter.CreateObservableGauge("integration.pattern.backlog",
        () => Backlogs.Select(b => new Measurement<long>(b.Value, new KeyValuePair<string, object?>("store", b.Key))),
        "{item}", "Open aggregation groups, held resequencer messages and unclaimed claim checks");

    /// <summary>Records the backlog of a store for <see cref="Backlog"/>.</summary>
    public static void ReportBacklog(string store, long count) => Backlogs[store] = count;
}
