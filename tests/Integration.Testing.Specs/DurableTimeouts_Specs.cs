using System.Diagnostics;
using Integration.Host.Fulfillment;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class DurableTimeouts_Specs
{
    [Test]
    public async Task When_a_four_hour_approval_timeout_is_fired_now_should_fail_the_order_through_the_timeout_path_in_seconds()
    {
        var watch = Stopwatch.StartNew();
        await using var host = await SampleHost.StartAsync();
        var sagas = host.Saga<OrderFulfillmentState>();
        var orderId = await host.SubmitOrder(quantity: 500);
        await sagas.WaitForStateAsync(orderId, nameof(OrderFulfillmentStateMachine.AwaitingApproval));

        var pending = (await host.Timeouts.PendingAsync()).Where(p => p.Is<ApprovalTimedOut>()).ToList();
        var fired = await host.Timeouts.FireNowAsync<ApprovalTimedOut>();
        var failed = await sagas.WaitForStateAsync(orderId, nameof(OrderFulfillmentStateMachine.Failed));

        Assert.Multiple(async () =>
        {
            Assert.That(fired, Has.Count.EqualTo(1), string.Join("; ", fired));
            Assert.That(fired[0].DueAt, Is.GreaterThan(DateTimeOffset.UtcNow.AddHours(3.9)), "the timeout was due in four hours");
            Assert.That(pending.Count, Is.LessThanOrEqualTo(1));
            Assert.That(failed.FailureReason, Does.Contain("No regional approval within 04:00:00"));
            Assert.That(failed.Steps, Does.Contain("ReservationReleased"));
            Assert.That(await host.Timeouts.PendingAsync(), Is.Empty, "the fired timeout is gone");
            Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromMinutes(1)));
        });
    }

    [Test]
    public async Task When_no_timeout_is_pending_should_fail_listing_the_pending_timeouts()
    {
        await using var host = await SampleHost.StartAsync();

        var failure = Assert.ThrowsAsync<AwaitTimeoutException>(() => host.Timeouts.FireNowAsync<ApprovalTimedOut>(timeout: TimeSpan.FromSeconds(1)));

        Assert.That(failure!.Message, Does.Contain("a pending ApprovalTimedOut timeout").And.Contain("no pending timeouts"));
    }
}
