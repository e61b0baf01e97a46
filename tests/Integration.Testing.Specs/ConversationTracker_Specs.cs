using Integration.Host.Contracts;
using Integration.Host.Fulfillment;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class ConversationTracker_Specs
{
    [Test]
    public async Task When_an_order_is_submitted_should_see_its_whole_conversation_until_it_is_fulfilled()
    {
        await using var host = await SampleHost.StartAsync();
        await using var tracker = await ConversationTracker.StartAsync(host.Broker);

        var orderId = await host.SubmitOrder(quantity: 2);
        var conversationId = await tracker.FindConversationAsync(m => m.Is<OrderSubmitted>() && m.Text.Contains(orderId.ToString(), StringComparison.OrdinalIgnoreCase));
        var conversation = await tracker.WaitForAsync<OrderFulfilled>(conversationId);

        Assert.Multiple(() =>
        {
            Assert.That(conversation.Any(m => m.Is<OrderSubmitted>()), Is.True, string.Join("\n", conversation));
            Assert.That(conversation.Any(m => m.Is<ReserveParts>()), Is.True, string.Join("\n", conversation));
            Assert.That(conversation.Any(m => m.Is<PartsReserved>()), Is.True, string.Join("\n", conversation));
            Assert.That(conversation.All(m => m.ConversationId == conversationId.ToString()), Is.True);
        });
    }

    [Test]
    public async Task When_the_conversation_does_not_finish_should_throw_listing_what_was_seen()
    {
        await using var host = await SampleHost.StartAsync();
        await using var tracker = await ConversationTracker.StartAsync(host.Broker);

        var orderId = await host.SubmitOrder(quantity: 2);
        var conversationId = await tracker.FindConversationAsync(m => m.Is<OrderSubmitted>() && m.Text.Contains(orderId.ToString(), StringComparison.OrdinalIgnoreCase));
        var timeout = Assert.ThrowsAsync<AwaitTimeoutException>(() => tracker.WaitForAsync(conversationId, 1000, TimeSpan.FromSeconds(2)));

        Assert.That(timeout!.Observed, Does.Contain("OrderSubmitted").And.Contain("message(s) in the conversation"));
    }
}
