using Integration.Patterns.Endpoints;
using Integration.Patterns.WireTap;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class WireTap_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_a_message_passes_should_copy_it_to_the_tap_and_continue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.WireTap("orders-audit").To("orders-out")), ["orders-audit", "orders-out"]);

        await harness.Send("orders", new Order("1", "x", 1));

        Assert.That((await harness.WaitFor("orders-out")).Single().Message.Id, Is.EqualTo("1"));
        Assert.That((await harness.WaitFor("orders-audit")).Single().Message.Id, Is.EqualTo("1"));
    }

    [Test]
    public async Task When_the_tap_fails_should_still_deliver_the_message()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.WireTap("orders-broken-tap").To("orders-out")), ["orders-out", "orders_error"],
            cfg => cfg.ConfigureSend(send => send.UseExecute(context =>
            {
                if (context.DestinationAddress?.AbsolutePath.EndsWith("orders-broken-tap", StringComparison.Ordinal) == true)
                    throw new InvalidOperationException("tap destination is down");
            })));

        await harness.Send("orders", new Order("1", "x", 1));

        Assert.That((await harness.WaitFor("orders-out")).Single().Message.Id, Is.EqualTo("1"));
        await harness.Harness.InactivityTask;
        Assert.That(harness.At("orders_error"), Is.Empty, "a failing tap must not send the message to the error queue");
        Assert.That(await harness.Faulted<Order>(), Is.False, "a failing tap must not fail the message");
    }

    [Test]
    public async Task When_the_tap_is_switched_off_should_not_copy()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.WireTap("orders-audit").To("orders-out")), ["orders-audit", "orders-out"]);

        Assert.That(harness.Control.SetSwitch("orders", "wiretap:orders-audit", false), Is.True);
        await harness.Send("orders", new Order("1", "x", 1));

        await harness.WaitFor("orders-out");
        Assert.That(harness.At("orders-audit"), Is.Empty);
    }
}
