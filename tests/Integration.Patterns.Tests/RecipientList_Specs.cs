using Integration.Patterns.RecipientList;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class RecipientList_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_the_list_is_static_should_deliver_to_every_recipient()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.RecipientList("billing", "shipping", "crm")), ["billing", "shipping", "crm"]);

        await harness.Send("orders", new Order("1", "x", 1));

        foreach (var queue in new[] { "billing", "shipping", "crm" })
            Assert.That((await harness.WaitFor(queue)).Single().Message.Id, Is.EqualTo("1"), queue);
    }

    [Test]
    public async Task When_the_list_is_computed_should_deliver_to_the_recipients_of_each_message()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.RecipientList(o => o.Amount > 100 ? ["billing", "audit-big"] : ["billing"])),
            ["billing", "audit-big"]);

        await harness.Send("orders", new Order("small", "x", 1));
        await harness.Send("orders", new Order("large", "x", 500));

        Assert.That((await harness.WaitFor("billing", 2)).Select(c => c.Message.Id), Is.EquivalentTo(new[] { "small", "large" }));
        Assert.That((await harness.WaitFor("audit-big")).Select(c => c.Message.Id), Is.EqualTo(new[] { "large" }));
    }

    [Test]
    public async Task When_one_recipient_fails_should_deliver_the_others_and_park_the_failure_in_the_error_queue()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.RecipientList(_ => ["billing", "broken", "shipping"], attempts: 2)),
            ["billing", "shipping", "orders_error"],
            cfg => cfg.ConfigureSend(send => send.UseExecute(context =>
            {
                if (context.DestinationAddress?.AbsolutePath.EndsWith("/broken", StringComparison.Ordinal) == true)
                    throw new InvalidOperationException("recipient is down");
            })));

        await harness.Send("orders", new Order("1", "x", 1));

        Assert.That((await harness.WaitFor("billing")).Single().Message.Id, Is.EqualTo("1"));
        Assert.That((await harness.WaitFor("shipping")).Single().Message.Id, Is.EqualTo("1"));
        var parked = (await harness.WaitFor("orders_error")).Single();
        await harness.Harness.InactivityTask;
        Assert.That(harness.At("orders_error"), Has.Count.EqualTo(1), "only the failed recipient's copy is parked; the message itself did not fail");
        Assert.That(parked.Headers.Get<string>(RecipientListHeaders.FailedRecipient), Is.EqualTo("broken"));
        Assert.That(parked.Headers.Get<string>(RecipientListHeaders.FailureReason), Does.Contain("recipient is down"));
        Assert.That(await harness.Faulted<Order>(), Is.False, "one failing recipient must not fail the message");
    }
}
