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

    /// <summary>Messages a step sent on, by route, step and destination.</summary>
    public static readonly Counter<long> Forwarded = Meter.CreateCounter<long>("integration.route.forwarded", "{message}", "Messages a route step sent on");

    /// <summary>Messages a filter dropped (counted and logged), by route.</summary>
    public static readonly Counter<long> Discarded = Meter.CreateCounter<long>("integration.route.discarded", "{message}", "Messages a message filter dropped");

    /// <summary>Wire tap copies that could not be sent (the tapped message went on regardless).</summary>
    public static readonly Counter<long> TapFailures = Meter.CreateCounter<long>("integration.route.wiretap.failures", "{message}", "Wire tap copies that failed");

    /// <summary>Recipient deliveries that failed after their retries and were parked in the error queue.</summary>
    public static readonly Counter<long> RecipientFailures = Meter.CreateCounter<long>("integration.route.recipient.failures", "{message}", "Recipient deliveries that failed");
}
