using Integration.Patterns.Endpoints;
using Integration.Patterns.Envelope;
using Integration.Patterns.Filtering;
using Integration.Patterns.History;
using Integration.Patterns.Transformation;
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
    public async Task When_steps_run_after_the_tap_should_give_the_copy_the_history_and_headers_up_to_the_tap_only()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .WireTap("orders-audit")
                .Filter(o =>
                {
                    Thread.Sleep(300); // the copy is on its way meanwhile
                    return true;
                }, otherwise: "orders-held")
                .Envelope(e => e.Header("x-after-tap", _ => "yes"))
                .To("orders-out")), ["orders-audit", "orders-out"]);

        await harness.Send("orders", new Order("1", "x", 1));

        var routed = (await harness.WaitFor("orders-out")).Single();
        var copy = (await harness.WaitFor("orders-audit")).Single();
        Assert.That(MessageHistory.Read(copy.Headers).Select(e => e.Step), Is.EqualTo(new[] { "wiretap:orders-audit" }), "steps after the tap leaked into the copy");
        Assert.That(copy.Headers.Get<string>("x-after-tap"), Is.Null);
        Assert.That(MessageHistory.Read(routed.Headers).Select(e => e.Step), Is.EqualTo(new[] { "wiretap:orders-audit", "filter:orders-held", "envelope", "to:orders-out" }));
        Assert.That(routed.Headers.Get<string>("x-after-tap"), Is.EqualTo("yes"));
    }

    [Test]
    public async Task When_the_tap_follows_a_translator_should_copy_the_translated_message()
    {
        await using var harness = await RouteHarness<CanonicalOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Translate(o => new CanonicalOrder(o.Id, o.Kind, o.Amount))
                .WireTap("orders-audit")
                .To("orders-out")), ["orders-audit", "orders-out"]);

        await harness.Send("orders", new Order("7", "priority", 3));

        Assert.That((await harness.WaitFor("orders-audit")).Single().Message, Is.EqualTo(new CanonicalOrder("7", "priority", 3)));
        Assert.That((await harness.WaitFor("orders-out")).Single().Message, Is.EqualTo(new CanonicalOrder("7", "priority", 3)));
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
