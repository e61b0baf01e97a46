using Integration.Host.Contracts;

namespace Integration.Host.Fulfillment;

// Commands the fulfillment saga publishes to the (simulated) downstream services, and their replies.
// Every message carries the order id: it is the saga's correlation id.

/// <summary>Reserve the order's parts in the warehouse.</summary>
public sealed record ReserveParts(Guid OrderId, IReadOnlyList<OrderLine> Lines);

/// <summary>The parts are reserved.</summary>
public sealed record PartsReserved(Guid OrderId, Guid ReservationId);

/// <summary>The parts could not be reserved.</summary>
public sealed record PartsReservationFailed(Guid OrderId, string Reason);

/// <summary>Compensation: give the reserved parts back.</summary>
public sealed record ReleaseReservation(Guid OrderId, Guid ReservationId);

/// <summary>The reservation was released.</summary>
public sealed record ReservationReleased(Guid OrderId);

/// <summary>Announces that an order needs a regional manager's approval (POST /api/orders/{id}/approve or /reject).</summary>
public sealed record RegionalApprovalRequested(Guid OrderId, string Region, int TotalQuantity, DateTimeOffset Deadline);

/// <summary>A regional manager approved the order.</summary>
public sealed record OrderApproved(Guid OrderId, string? ApprovedBy);

/// <summary>A regional manager rejected the order.</summary>
public sealed record OrderRejected(Guid OrderId, string? Reason);

/// <summary>Scheduled when approval is requested; arrives when nobody decided in time.</summary>
public sealed record ApprovalTimedOut(Guid OrderId);

/// <summary>Create the purchase order with the supplier.</summary>
public sealed record CreatePurchaseOrder(Guid OrderId, IReadOnlyList<OrderLine> Lines);

/// <summary>The purchase order exists.</summary>
public sealed record PurchaseOrderCreated(Guid OrderId, Guid PurchaseOrderId);

/// <summary>The purchase order could not be created.</summary>
public sealed record PurchaseOrderFailed(Guid OrderId, string Reason);

/// <summary>Compensation: cancel the purchase order.</summary>
public sealed record CancelPurchaseOrder(Guid OrderId, Guid PurchaseOrderId);

/// <summary>The purchase order was cancelled.</summary>
public sealed record PurchaseOrderCancelled(Guid OrderId);

/// <summary>Book the ordered parts into inventory.</summary>
public sealed record UpdateInventory(Guid OrderId, IReadOnlyList<OrderLine> Lines);

/// <summary>Inventory is updated.</summary>
public sealed record InventoryUpdated(Guid OrderId);

/// <summary>Inventory could not be updated.</summary>
public sealed record InventoryUpdateFailed(Guid OrderId, string Reason);

/// <summary>The order went through every step.</summary>
public sealed record OrderFulfilled(Guid OrderId);

/// <summary>The order failed; its finished steps were compensated.</summary>
public sealed record OrderFulfillmentFailed(Guid OrderId, string Reason);
