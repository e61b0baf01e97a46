using Integration.Patterns.ContentRouting;
using Integration.Patterns.Routing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class ContentRouter_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static readonly string[] Destinations = ["big-orders", "priority-orders", "other-orders"];

    static Action<IRouteBuilder> Routes => routes => routes.From<Order>("orders", r => r
        .Route(c => c
            .When(o => o.Amount > 1000, "big-orders")
            .ByKey(o => o.Kind)
            .WhenKey("priority", "priority-orders")
            .Otherwise("other-orders"), name: "by-size"));

    [Test]
    public async Task When_a_when_clause_matches_should_route_to_its_queue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);

        await harness.Send("orders", new Order("1", "priority", 5000));

        Assert.That((await harness.WaitFor("big-orders")).Single().Message.Id, Is.EqualTo("1"), "the first matching clause wins");
        Assert.That(harness.At("priority-orders"), Is.Empty);
    }

    [Test]
    public async Task When_order_is_priority_should_route_to_priority_queue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);

        await harness.Send("orders", new Order("2", "PRIORITY", 10));

        Assert.That((await harness.WaitFor("priority-orders")).Single().Message.Id, Is.EqualTo("2"), "keys match ignoring case");
    }

    [Test]
    public async Task When_nothing_matches_should_route_otherwise()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);

        await harness.Send("orders", new Order("3", "standard", 10));

        Assert.That((await harness.WaitFor("other-orders")).Single().Message.Id, Is.EqualTo("3"));
    }

    [Test]
    public async Task When_the_table_is_replaced_at_run_time_should_route_by_the_new_table()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes, Destinations);
        var table = harness.Control.FindRoutingTable("orders", "by-size")!;

        var failures = table.ReplaceKeyed(new Dictionary<string, string> { ["standard"] = "priority-orders" }, "other-orders");
        await harness.Send("orders", new Order("4", "standard", 10));

        Assert.That(failures, Is.Empty);
        Assert.That((await harness.WaitFor("priority-orders")).Single().Message.Id, Is.EqualTo("4"));
    }

    [Test]
    public void When_the_router_has_no_otherwise_should_fail_at_bus_start_naming_route_and_step()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.Route(c => c.When(o => o.Amount > 1, "big-orders"))), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders', step 1 (Route): no Otherwise"));
    }

    [Test]
    public void When_the_router_has_no_clause_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.Route(c => c.Otherwise("other-orders"))), []);
        });

        Assert.That(failure!.Message, Does.Contain("it has no When or WhenKey clause"));
    }
}
