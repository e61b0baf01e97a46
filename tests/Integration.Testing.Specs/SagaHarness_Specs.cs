using Integration.Host.Fulfillment;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class SagaHarness_Specs
{
    [Test]
    public async Task When_an_order_is_submitted_should_read_the_saga_in_the_state_it_reached()
    {
        await using var host = await SampleHost.StartAsync();
        var sagas = host.Saga<OrderFulfillmentState>();
        var orderId = await host.SubmitOrder(quantity: 3);

        var completed = await sagas.WaitForStateAsync(orderId, nameof(OrderFulfillmentStateMachine.Completed));

        Assert.Multiple(async () =>
        {
            Assert.That(completed.CorrelationId, Is.EqualTo(orderId));
            Assert.That(completed.TotalQuantity, Is.EqualTo(3));
            Assert.That(await sagas.StateAsync(orderId), Is.EqualTo("Completed"));
            Assert.That(await sagas.FindAsync(Guid.NewGuid()), Is.Null);
        });
    }

    [Test]
    public async Task When_an_instance_never_reaches_the_state_should_fail_listing_the_states_observed()
    {
        await using var host = await SampleHost.StartAsync();
        var sagas = host.Saga<OrderFulfillmentState>();
        var orderId = await host.SubmitOrder(quantity: 500);
        await sagas.WaitForStateAsync(orderId, nameof(OrderFulfillmentStateMachine.AwaitingApproval));

        // Four hours of approval timeout: within one second it stays where it is.
        var failure = Assert.ThrowsAsync<AwaitTimeoutException>(() =>
            sagas.WaitForStateAsync(orderId, nameof(OrderFulfillmentStateMachine.Completed), TimeSpan.FromSeconds(1)));

        Assert.That(failure!.Message, Does.Contain($"OrderFulfillmentState {orderId} in state Completed")
            .And.Contain("states AwaitingApproval")
            .And.Contain("\"TotalQuantity\":500"));
    }
}
