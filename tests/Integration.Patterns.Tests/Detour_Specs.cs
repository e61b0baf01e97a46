using Integration.Patterns.Detour;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Filtering;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using Integration.Patterns.WireTap;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Detour_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static Action<IRouteBuilder> Routes => routes => routes.From<Order>("orders", r => r
        .Detour("inspect", d => d.WireTap("orders-inspection").Filter(o => o.Amount < 1000, otherwise: "orders-held"))
        .To("orders-out"));

    static readonly string[] Destinations = ["orders-inspection", "orders-held", "orders-out"];

    [Test]
    public async Task When_the_detour_is_off_should_skip_its_steps()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);

        await harness.Send("orders", new Order("1", "x", 5000));

        var routed = (await harness.WaitFor("orders-out")).Single();
        Assert.That(harness.At("orders-inspection"), Is.Empty);
        Assert.That(MessageHistory.Read(routed.Headers).Select(e => e.Step), Is.EqualTo(new[] { "detour:inspect", "to:orders-out" }));
    }

    [Test]
    public async Task When_the_detour_is_switched_on_should_run_its_steps_then_continue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);
        Assert.That(harness.Control.SetSwitch("orders", "detour:inspect", true), Is.True);

        await harness.Send("orders", new Order("small", "x", 5));
        await harness.Send("orders", new Order("large", "x", 5000));

        Assert.That((await harness.WaitFor("orders-out")).Select(c => c.Message.Id), Is.EqualTo(new[] { "small" }));
        Assert.That((await harness.WaitFor("orders-held")).Select(c => c.Message.Id), Is.EqualTo(new[] { "large" }));
        Assert.That((await harness.WaitFor("orders-inspection", 2)).Count, Is.EqualTo(2));
        var routed = harness.At("orders-out").Single();
        Assert.That(MessageHistory.Read(routed.Headers).Select(e => e.Step),
            Is.EqualTo(new[] { "detour:inspect", "wiretap:orders-inspection", "filter:orders-held", "to:orders-out" }));
    }

    [Test]
    public void When_a_detour_step_ends_the_message_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.Detour("inspect", d => d.To("elsewhere")).To("orders-out")), []);
        });

        Assert.That(failure!.Message, Does.Contain("detour 'inspect' step 1 (To) ends the message"));
    }
}
