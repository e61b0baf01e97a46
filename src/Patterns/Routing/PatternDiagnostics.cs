using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Integration.Patterns.Routing;

/// <summary>
/// The library's trace source and the name of its meter, both <c>Integration.Patterns</c>. The meter itself belongs to
/// the host's <see cref="IMeterFactory"/> (one per service provider, see <c>AddIntegrationRoutes</c>): export it with
/// <c>metrics.AddMeter(PatternDiagnostics.Name)</c>.
/// </summary>
public static class PatternDiagnostics
{
    /// <summary>Name of the ActivitySource and the Meter.</summary>
    public const string Name = "Integration.Patterns";

    /// <summary>One span per route step.</summary>
    public static readonly ActivitySource Source = new(Name);
}

/// <summary>
/// The <c>Integration.Patterns</c> instruments of one service provider (a DI singleton registered by
/// <c>AddIntegrationRoutes</c>), on a meter from the host's <see cref="IMeterFactory"/>; a container without one (a bare
/// <c>ServiceCollection</c>) gets a meter owned, and disposed, by this instance. Nothing here is static: two hosts in one
/// process count apart.
/// </summary>
internal sealed class PatternMetrics : IDisposable
{
    readonly Meter _meter;
    readonly bool _ownsMeter;
    readonly ConcurrentDictionary<string, long> _backlogs = new(StringComparer.Ordinal);
    readonly Counter<long> _forwarded;
    readonly Counter<long> _discarded;
    readonly Counter<long> _tapFailures;
    readonly Counter<long> _recipientFailures;

    public PatternMetrics(IMeterFactory? meterFactory)
    {
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(PatternDiagnostics.Name) ?? new Meter(PatternDiagnostics.Name);
        _forwarded = _meter.CreateCounter<long>("integration.route.forwarded", "{message}", "Messages a route step sent on");
        _discarded = _meter.CreateCounter<long>("integration.route.discarded", "{message}", "Messages a message filter dropped");
        _tapFailures = _meter.CreateCounter<long>("integration.route.wiretap.failures", "{message}", "Wire tap copies that failed");
        _recipientFailures = _meter.CreateCounter<long>("integration.route.recipient.failures", "{message}", "Recipient deliveries that failed");
        _meter.CreateObservableGauge("integration.pattern.backlog",
            () => _backlogs.Select(b => new Measurement<long>(b.Value, new KeyValuePair<string, object?>("store", b.Key))),
            "{item}", "Open aggregation groups, held resequencer messages and unclaimed claim checks");
    }

    /// <summary>The meter the instruments are on.</summary>
    public Meter Meter => _meter;

    /// <summary>A step sent a message on (<c>integration.route.forwarded</c>, by route and destination).</summary>
    public void Forwarded(string route, string destination) =>
        _forwarded.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("destination", destination));

    /// <summary>A filter dropped a message, or a splitter found no part (<c>integration.route.discarded</c>, by route).</summary>
    public void Discarded(string route) => _discarded.Add(1, new KeyValuePair<string, object?>("route", route));

    /// <summary>A wire tap copy could not be sent (the tapped message went on regardless).</summary>
    public void TapFailed(string route, string destination) =>
        _tapFailures.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("destination", destination));

    /// <summary>A recipient delivery failed after its retries and was parked in the error queue.</summary>
    public void RecipientFailed(string route, string destination) =>
        _recipientFailures.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("destination", destination));

    /// <summary>
    /// What a stateful pattern holds in PostgreSQL, by store (<c>{route}/{step}</c> or <c>claims</c>): open aggregation
    /// groups, held resequencer messages, unclaimed claim checks; refreshed by their background workers
    /// (<c>integration.pattern.backlog</c>).
    /// </summary>
    public void ReportBacklog(string store, long count) => _backlogs[store] = count;

    public void Dispose()
    {
        if (_ownsMeter)
            _meter.Dispose();
    }
}
