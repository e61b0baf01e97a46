using Integration.Patterns.Endpoints;
using Integration.Patterns.Filtering;
using Integration.Patterns.Routing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class MessageFilter_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_a_message_is_rejected_should_send_it_to_the_discard_queue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.Filter(o => o.Amount > 0, otherwise: "orders-discarded").To("orders-accepted")),
            ["orders-discarded", "orders-accepted"]);

        await harness.Send("orders", new Order("bad", "x", 0));
        await harness.Send("orders", new Order("good", "x", 5));

        Assert.That((await harness.WaitFor("orders-discarded")).Single().Message.Id, Is.EqualTo("bad"));
        Assert.That((await harness.WaitFor("orders-accepted")).Single().Message.Id, Is.EqualTo("good"));
    }

    [Test]
    public async Task When_rejections_are_counted_should_drop_only_the_rejected_ones()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.Filter(o => o.Amount > 0, Rejection.CountAndLog).To("orders-accepted")),
            ["orders-accepted"]);

        await harness.Send("orders", new Order("bad", "x", 0));
        await harness.Send("orders", new Order("good", "x", 5));

        Assert.That((await harness.WaitFor("orders-accepted")).Select(c => c.Message.Id), Is.EqualTo(new[] { "good" }));
        Assert.That(await harness.Faulted<Order>(), Is.False, "a filtered message is not a failure");
    }

    [Test]
    public async Task When_validation_fails_should_fault_the_message_with_the_reason()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.Validate(o => o.Customer is not null, "customer is required").To("orders-accepted")),
            ["orders-accepted"]);

        await harness.Send("orders", new Order("anonymous", "x", 5));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Exception is MessageRejectedException e && e.Message.Contains("customer is required")), Is.True);
        Assert.That(harness.At("orders-accepted"), Is.Empty);
    }

    [Test]
    public void When_the_route_does_not_end_in_a_destination_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.Filter(o => o.Amount > 0, Rejection.CountAndLog)), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders': the last step does not send the message anywhere"));
    }

    [Test]
    public void When_the_discard_queue_is_not_a_queue_name_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.Filter(o => o.Amount > 0, otherwise: "bad queue").To("x")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders', step 1 (Filter): discard queue 'bad queue' is not a valid queue name"));
    }
}
