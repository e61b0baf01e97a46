using System.Net;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>The order fulfillment saga on the real host, driven through the orders API, on real RabbitMQ and PostgreSQL.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Fulfillment_Specs
{
    IntegrationTestHost<Program> _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() => _host = await TestHost.StartAsync("fulfillment", new Dictionary<string, string?>
    {
        ["Integration:Fulfillment:ApprovalQuantityLimit"] = "100",
        ["Integration:Fulfillment:ApprovalTimeout"] = "00:00:02",
    });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    OrdersClient Orders => new(_host.Client);

    [Test]
    public async Task When_every_step_succeeds_should_complete_with_each_step_in_order()
    {
        var orderId = await Orders.Submit(("PUMP-1", 2), ("HOSE-3", 5));

        var order = await Orders.WaitFor(orderId, "Completed");

        Assert.That(order.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "PurchaseOrderCreated", "InventoryUpdated" }));
        Assert.That(order.FailureReason, Is.Null);
    }

    [Test]
    public async Task When_the_reservation_fails_should_fail_with_nothing_to_compensate()
    {
        var orderId = await Orders.Submit(("FAIL-RESERVE-7", 1));

        var order = await Orders.WaitFor(orderId, "Failed");

        Assert.That(order.Steps, Is.EqualTo(new[] { "Submitted", "PartsReservationFailed" }));
        Assert.That(order.FailureReason, Does.Contain("FAIL-RESERVE-7"));
    }

    [Test]
    public async Task When_the_purchase_order_fails_should_release_the_reservation_and_fail()
    {
        var orderId = await Orders.Submit(("PUMP-1", 1), ("FAIL-PO-2", 1));

        var order = await Orders.WaitFor(orderId, "Failed");

        Assert.That(order.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "PurchaseOrderFailed", "ReservationReleased" }));
        Assert.That(order.FailureReason, Does.Contain("FAIL-PO-2"));
    }

    [Test]
    public async Task When_the_inventory_update_fails_should_cancel_the_purchase_order_then_release_the_reservation()
    {
        var orderId = await Orders.Submit(("FAIL-INVENTORY-9", 3));

        var order = await Orders.WaitFor(orderId, "Failed");

        Assert.That(order.Steps, Is.EqualTo(new[]
        {
            "Submitted", "PartsReserved", "PurchaseOrderCreated", "InventoryUpdateFailed", "PurchaseOrderCancelled", "ReservationReleased",
        }));
        Assert.That(order.FailureReason, Does.Contain("FAIL-INVENTORY-9"));
    }

    [Test]
    public async Task When_a_large_order_is_approved_should_complete()
    {
        var orderId = await Orders.Submit(("PUMP-1", 60), ("HOSE-3", 41));
        await Orders.WaitFor(orderId, "AwaitingApproval");

        Assert.That(await Orders.Decide(orderId, "approve", new { by = "regional-manager" }), Is.EqualTo(HttpStatusCode.Accepted));

        var order = await Orders.WaitFor(orderId, "Completed");
        Assert.That(order.Steps, Is.EqualTo(new[]
        {
            "Submitted", "PartsReserved", "ApprovalRequested", "Approved", "PurchaseOrderCreated", "InventoryUpdated",
        }));
    }

    [Test]
    public async Task When_an_order_at_the_limit_is_submitted_should_not_ask_for_approval()
    {
        var orderId = await Orders.Submit(("PUMP-1", 100));

        var order = await Orders.WaitFor(orderId, "Completed");

        Assert.That(order.Steps, Does.Not.Contain("ApprovalRequested"));
    }

    [Test]
    public async Task When_a_large_order_is_rejected_should_release_the_reservation_and_fail_with_the_reason()
    {
        var orderId = await Orders.Submit(("PUMP-1", 500));
        await Orders.WaitFor(orderId, "AwaitingApproval");

        Assert.That(await Orders.Decide(orderId, "reject", new { reason = "over budget" }), Is.EqualTo(HttpStatusCode.Accepted));

        var order = await Orders.WaitFor(orderId, "Failed");
        Assert.That(order.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "ApprovalRequested", "Rejected", "ReservationReleased" }));
        Assert.That(order.FailureReason, Does.Contain("over budget"));
    }

    [Test]
    public async Task When_nobody_decides_in_time_should_time_out_release_the_reservation_and_fail()
    {
        var orderId = await Orders.Submit(("PUMP-1", 101));
        await Orders.WaitFor(orderId, "AwaitingApproval");

        var order = await Orders.WaitFor(orderId, "Failed", TimeSpan.FromSeconds(60));

        Assert.That(order.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "ApprovalRequested", "ApprovalTimedOut", "ReservationReleased" }));
        Assert.That(order.FailureReason, Does.Contain("approval"));
    }

    [Test]
    public async Task When_an_unknown_order_is_approved_should_answer_404()
    {
        Assert.That(await Orders.Decide(Guid.NewGuid(), "approve"), Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(await Orders.Decide(Guid.NewGuid(), "reject"), Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task When_an_order_not_awaiting_approval_is_approved_or_rejected_should_answer_409_and_change_nothing()
    {
        var orderId = await Orders.Submit(("PUMP-1", 1));
        await Orders.WaitFor(orderId, "Completed");

        Assert.That(await Orders.Decide(orderId, "approve"), Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That(await Orders.Decide(orderId, "reject"), Is.EqualTo(HttpStatusCode.Conflict));
        Assert.That((await Orders.Get(orderId))!.Status, Is.EqualTo("Completed"));
    }
}
