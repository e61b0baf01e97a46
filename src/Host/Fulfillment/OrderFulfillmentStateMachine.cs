using System.Diagnostics.Metrics;
using System.Text.Json;
using Integration.Host.Contracts;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Integration.Host.Fulfillment;

/// <summary>
/// The order fulfillment orchestrator: reserve parts → regional approval when the order is large (with a timeout) →
/// create purchase order → update inventory → <c>Completed</c>. A failed step compensates the finished ones in reverse
/// order (cancel the purchase order, then release the reservation) and the order ends <c>Failed</c> with the reason.
/// Diagram: docs/sagas/order-fulfillment.mmd (generated from this definition).
/// </summary>
public sealed class OrderFulfillmentStateMachine : MassTransitStateMachine<OrderFulfillmentState>
{
    /// <summary>Defines the machine with the approval limit and timeout from <paramref name="options"/>.</summary>
    public OrderFulfillmentStateMachine(IOptions<FulfillmentOptions> options, IMeterFactory? meters = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var settings = options.Value;
        var meter = meters?.Create("Integration.Host.Fulfillment") ?? new Meter("Integration.Host.Fulfillment");
        _staleEvents = meter.CreateCounter<long>("integration.fulfillment.stale_events", "{event}",
            "Events ignored because the saga had already left the step they answer (redelivered copies)");
        InstanceState(x => x.CurrentState);

        Event(() => Submitted, e => e.CorrelateById(m => m.Message.OrderId));
        Event(() => Reserved, e => Correlate(e, m => m.OrderId));
        Event(() => ReservationFailed, e => Correlate(e, m => m.OrderId));
        Event(() => Released, e => Correlate(e, m => m.OrderId));
        Event(() => Approved, e => Correlate(e, m => m.OrderId));
        Event(() => Rejected, e => Correlate(e, m => m.OrderId));
        Event(() => PurchaseOrderCreated, e => Correlate(e, m => m.OrderId));
        Event(() => PurchaseOrderFailed, e => Correlate(e, m => m.OrderId));
        Event(() => PurchaseOrderCancelled, e => Correlate(e, m => m.OrderId));
        Event(() => InventoryUpdated, e => Correlate(e, m => m.OrderId));
        Event(() => InventoryUpdateFailed, e => Correlate(e, m => m.OrderId));
        Schedule(() => ApprovalTimeout, s => s.ApprovalTimeoutTokenId, s =>
        {
            s.Delay = settings.ApprovalTimeout;
            s.Received = r =>
            {
                r.CorrelateById(m => m.Message.OrderId);
                r.OnMissingInstance(m => m.Discard());
            };
        });

        Initially(
            When(Submitted)
                .Then(c =>
                {
                    c.Saga.DeviceId = c.Message.DeviceId;
                    c.Saga.Region = c.Message.Region;
                    c.Saga.TotalQuantity = c.Message.Lines.Sum(l => l.Quantity);
                    c.Saga.LinesJson = JsonSerializer.Serialize(c.Message.Lines);
                    c.Saga.SubmittedAt = c.Message.SubmittedAt;
                    c.Saga.Step("Submitted");
                })
                .Publish(c => new ReserveParts(c.Saga.CorrelationId, c.Saga.Lines))
                .TransitionTo(Reserving));

        During(Reserving,
            When(Reserved)
                .Then(c =>
                {
                    c.Saga.ReservationId = c.Message.ReservationId;
                    c.Saga.Step("PartsReserved");
                })
                .IfElse(c => c.Saga.TotalQuantity > settings.ApprovalQuantityLimit,
                    large => large
                        .Then(c => c.Saga.Step("ApprovalRequested"))
                        .Schedule(ApprovalTimeout, c => new ApprovalTimedOut(c.Saga.CorrelationId))
                        .Publish(c => new RegionalApprovalRequested(c.Saga.CorrelationId, c.Saga.Region, c.Saga.TotalQuantity,
                            DateTimeOffset.UtcNow + settings.ApprovalTimeout))
                        .TransitionTo(AwaitingApproval),
                    small => small
                        .Publish(c => new CreatePurchaseOrder(c.Saga.CorrelationId, c.Saga.Lines))
                        .TransitionTo(CreatingPurchaseOrder)),
            When(ReservationFailed)
                .Then(c => Fail(c.Saga, "PartsReservationFailed", $"Parts reservation failed: {c.Message.Reason}"))
                .Publish(c => new OrderFulfillmentFailed(c.Saga.CorrelationId, c.Saga.FailureReason!))
                .TransitionTo(Failed));

        During(AwaitingApproval,
            When(Approved)
                .Unschedule(ApprovalTimeout)
                .Then(c => c.Saga.Step("Approved"))
                .Publish(c => new CreatePurchaseOrder(c.Saga.CorrelationId, c.Saga.Lines))
                .TransitionTo(CreatingPurchaseOrder),
            When(Rejected)
                .Unschedule(ApprovalTimeout)
                .Then(c => Fail(c.Saga, "Rejected", $"Rejected by the region: {c.Message.Reason ?? "no reason given"}"))
                .Publish(c => new ReleaseReservation(c.Saga.CorrelationId, c.Saga.ReservationId!.Value))
                .TransitionTo(ReleasingReservation),
            When(ApprovalTimeout.Received)
                .Then(c => Fail(c.Saga, "ApprovalTimedOut", $"No regional approval within {settings.ApprovalTimeout}"))
                .Publish(c => new ReleaseReservation(c.Saga.CorrelationId, c.Saga.ReservationId!.Value))
                .TransitionTo(ReleasingReservation));

        During(CreatingPurchaseOrder,
            When(PurchaseOrderCreated)
                .Then(c =>
                {
                    c.Saga.PurchaseOrderId = c.Message.PurchaseOrderId;
                    c.Saga.Step("PurchaseOrderCreated");
                })
                .Publish(c => new UpdateInventory(c.Saga.CorrelationId, c.Saga.Lines))
                .TransitionTo(UpdatingInventory),
            When(PurchaseOrderFailed)
                .Then(c => Fail(c.Saga, "PurchaseOrderFailed", $"Purchase order failed: {c.Message.Reason}"))
                .Publish(c => new ReleaseReservation(c.Saga.CorrelationId, c.Saga.ReservationId!.Value))
                .TransitionTo(ReleasingReservation));

        During(UpdatingInventory,
            When(InventoryUpdated)
                .Then(c => c.Saga.Step("InventoryUpdated"))
                .Publish(c => new OrderFulfilled(c.Saga.CorrelationId))
                .TransitionTo(Completed),
            When(InventoryUpdateFailed)
                .Then(c => Fail(c.Saga, "InventoryUpdateFailed", $"Inventory update failed: {c.Message.Reason}"))
                .Publish(c => new CancelPurchaseOrder(c.Saga.CorrelationId, c.Saga.PurchaseOrderId!.Value))
                .TransitionTo(CancellingPurchaseOrder));

        // Compensation, newest step first: the purchase order, then the reservation.
        During(CancellingPurchaseOrder,
            When(PurchaseOrderCancelled)
                .Then(c => c.Saga.Step("PurchaseOrderCancelled"))
                .Publish(c => new ReleaseReservation(c.Saga.CorrelationId, c.Saga.ReservationId!.Value))
                .TransitionTo(ReleasingReservation));

        During(ReleasingReservation,
            When(Released)
                .Then(c => c.Saga.Step("ReservationReleased"))
                .Publish(c => new OrderFulfillmentFailed(c.Saga.CorrelationId, c.Saga.FailureReason!))
                .TransitionTo(Failed));

        // Every state the order enters is told to the device that placed it (the device hub delivers it: src/Host/Devices).
        // Never for Initial (a guard: the order's device is only on the instance once Submitted has been handled).
        WhenEnterAny(x => x.If(c => c.Saga.CurrentState != Initial.Name,
            entered => entered.Publish(c => new OrderStatusChanged(c.Saga.CorrelationId, c.Saga.DeviceId, c.Saga.CurrentState, DateTimeOffset.UtcNow))));

        // Redeliveries and late decisions change nothing. Delivery is at-least-once (a relay re-sends after a lost
        // confirm, the broker redelivers after a lost ack): an event for a step the saga has already left is a copy.
        DuringAny(Ignore(Submitted));
        OnUnhandledEvent(context =>
        {
            _staleEvents.Add(1, new KeyValuePair<string, object?>("event", context.Event.Name), new KeyValuePair<string, object?>("state", context.Saga.CurrentState));
            return context.Ignore();
        });
        foreach (var state in new[] { Reserving, CreatingPurchaseOrder, UpdatingInventory, CancellingPurchaseOrder, ReleasingReservation, Completed, Failed })
            During(state, Ignore(Approved), Ignore(Rejected), Ignore(ApprovalTimeout.Received));
    }

    /// <summary>Events ignored because the saga had already left the step they answer (redelivered copies), on the host's meter factory.</summary>
    readonly Counter<long> _staleEvents;

    static void Correlate<T>(IEventCorrelationConfigurator<OrderFulfillmentState, T> e, Func<T, Guid> orderId)
        where T : class
    {
        e.CorrelateById(m => orderId(m.Message));
        e.OnMissingInstance(m => m.Discard());
    }

    static void Fail(OrderFulfillmentState saga, string step, string reason)
    {
        saga.FailureReason = reason;
        saga.Step(step);
    }

#pragma warning disable CS1591 // States and events are named by their property.
    public State Reserving { get; private set; } = null!;
    public State AwaitingApproval { get; private set; } = null!;
    public State CreatingPurchaseOrder { get; private set; } = null!;
    public State UpdatingInventory { get; private set; } = null!;
    public State CancellingPurchaseOrder { get; private set; } = null!;
    public State ReleasingReservation { get; private set; } = null!;
    public State Completed { get; private set; } = null!;
    public State Failed { get; private set; } = null!;

    public Event<OrderSubmitted> Submitted { get; private set; } = null!;
    public Event<PartsReserved> Reserved { get; private set; } = null!;
    public Event<PartsReservationFailed> ReservationFailed { get; private set; } = null!;
    public Event<ReservationReleased> Released { get; private set; } = null!;
    public Event<OrderApproved> Approved { get; private set; } = null!;
    public Event<OrderRejected> Rejected { get; private set; } = null!;
    public Event<PurchaseOrderCreated> PurchaseOrderCreated { get; private set; } = null!;
    public Event<PurchaseOrderFailed> PurchaseOrderFailed { get; private set; } = null!;
    public Event<PurchaseOrderCancelled> PurchaseOrderCancelled { get; private set; } = null!;
    public Event<InventoryUpdated> InventoryUpdated { get; private set; } = null!;
    public Event<InventoryUpdateFailed> InventoryUpdateFailed { get; private set; } = null!;
    public Schedule<OrderFulfillmentState, ApprovalTimedOut> ApprovalTimeout { get; private set; } = null!;
#pragma warning restore CS1591
}
