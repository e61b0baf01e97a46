using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Filtering;
using Integration.Patterns.Routing;
using Integration.Patterns.WireTap;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>A host's meter factory, recording the measurements of the meters it created.</summary>
public sealed class RecordingMeterFactory : IMeterFactory
{
    readonly List<Meter> _meters = [];
    readonly MeterListener _listener = new();

    public RecordingMeterFactory()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, this))
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var key = $"{instrument.Meter.Name}/{instrument.Name}{{{string.Join(",", tags.ToArray().Select(t => $"{t.Key}={t.Value}"))}}}";
            Measurements.AddOrUpdate(key, value, (_, total) => instrument is ObservableGauge<long> ? value : total + value);
        });
        _listener.Start();
    }

    /// <summary><c>{meter}/{instrument}{tag=value,…}</c> → the sum of its measurements (the last one, for a gauge).</summary>
    public ConcurrentDictionary<string, long> Measurements { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<Meter> Meters => _meters;

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        lock (_meters)
            _meters.Add(meter);
        return meter;
    }

    public void Dispose()
    {
        _listener.Dispose();
        foreach (var meter in _meters)
            meter.Dispose();
    }
}

[TestFixture]
public sealed class Metrics_Specs
{
    static void Routes(IRouteBuilder routes) => routes.From<Order>("orders", r => r
        .WireTap("orders-audit")
        .Filter(o => o.Amount > 0, Rejection.CountAndLog)
        .Route(c => c.When(o => o.Kind == "big", "big-orders").Otherwise("other-orders")));

    [Test]
    public async Task When_messages_are_routed_should_count_them_on_the_meter_of_the_hosts_meter_factory_and_nowhere_else()
    {
        using var mine = new RecordingMeterFactory();
        using var theirs = new RecordingMeterFactory();
        await using var other = await RouteHarness<Order>.StartAsync(new InMemory(), Routes, ["big-orders"], services: s => s.AddSingleton<IMeterFactory>(theirs));
        await using var harness = await RouteHarness<Order>.StartAsync(new InMemory(), Routes, ["big-orders", "other-orders", "orders-audit"],
            services: s => s.AddSingleton<IMeterFactory>(mine));

        await harness.Send("orders", new Order("1", "big", 10));
        await harness.Send("orders", new Order("2", "small", 10));
        await harness.Send("orders", new Order("3", "small", 0));
        await harness.WaitFor("other-orders");
        await harness.WaitFor("orders-audit", 3);
        await harness.Harness.InactivityTask;

        Assert.That(mine.Meters.Select(m => m.Name), Does.Contain(PatternDiagnostics.Name));
        Assert.That(mine.Measurements, Does.ContainKey("Integration.Patterns/integration.route.forwarded{route=orders,destination=big-orders}").WithValue(1));
        Assert.That(mine.Measurements, Does.ContainKey("Integration.Patterns/integration.route.forwarded{route=orders,destination=other-orders}").WithValue(1));
        Assert.That(mine.Measurements, Does.ContainKey("Integration.Patterns/integration.route.discarded{route=orders}").WithValue(1));
        Assert.That(theirs.Measurements, Is.Empty, "another host's meter counted this host's messages");
    }
}
