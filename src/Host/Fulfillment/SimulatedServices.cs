using Integration.Host.Contracts;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Integration.Host.Fulfillment;

/// <summary>
/// Stand-ins for the warehouse, the supplier and inventory. They fail deterministically so users and tests can see
/// compensation: a line whose SKU starts with <c>FAIL-RESERVE</c>, <c>FAIL-PO</c> or <c>FAIL-INVENTORY</c> fails that step.
/// Compensations always succeed.
/// </summary>
public static class SimulatedFailures
{
    /// <summary>SKU prefix that makes the reservation fail.</summary>
    public const string Reserve = "FAIL-RESERVE";

    /// <summary>SKU prefix that makes the purchase order fail.</summary>
    public const string PurchaseOrder = "FAIL-PO";

    /// <summary>SKU prefix that makes the inventory update fail.</summary>
    public const string Inventory = "FAIL-INVENTORY";

    /// <summary>
    /// Waits the configured service delay, then publishes through the outbox either the failure (when a line's SKU
    /// starts with <paramref name="prefix"/>; null: the step never fails) or the success reply.
    /// </summary>
    internal static async Task Answer(IOptions<FulfillmentOptions> options, IOutbox outbox, Guid orderId, CancellationToken cancellationToken,
        Func<object> succeeded, IReadOnlyList<OrderLine>? lines = null, string? prefix = null, Func<string, object>? failed = null)
    {
        if (options.Value.SimulatedServiceDelay > TimeSpan.Zero)
            await Task.Delay(options.Value.SimulatedServiceDelay, cancellationToken).ConfigureAwait(false);
        // A command of a step that can fail must carry its lines: without them it is a bad message (a fault, dead-lettered), not a success.
        if (prefix is not null && lines is null)
            throw new InvalidOperationException($"The command for order {orderId} has no lines");
        var sku = prefix is not null ? lines!.FirstOrDefault(l => l.Sku.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))?.Sku : null;
        outbox.Publish(sku is not null && failed is not null ? failed(sku) : succeeded(), orderId);
    }
}

/// <summary>
/// The warehouse: reserves parts and releases reservations. Like the other services it runs behind the inbox and replies
/// through the outbox, so a command redelivered after a crash is acknowledged as a duplicate instead of executed twice.
/// </summary>
public sealed class WarehouseService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<ReserveParts>, IConsumer<ReleaseReservation>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<ReserveParts> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var id = context.Message.OrderId;
        return SimulatedFailures.Answer(options, outbox, id, context.CancellationToken, () => new PartsReserved(id, NewId.NextGuid()),
            context.Message.Lines, SimulatedFailures.Reserve, sku => new PartsReservationFailed(id, $"no stock for {sku}"));
    }

    /// <inheritdoc />
    public Task Consume(ConsumeContext<ReleaseReservation> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return SimulatedFailures.Answer(options, outbox, context.Message.OrderId, context.CancellationToken, () => new ReservationReleased(context.Message.OrderId));
    }
}

/// <summary>The supplier: creates and cancels purchase orders.</summary>
public sealed class PurchasingService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<CreatePurchaseOrder>, IConsumer<CancelPurchaseOrder>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<CreatePurchaseOrder> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var id = context.Message.OrderId;
        return SimulatedFailures.Answer(options, outbox, id, context.CancellationToken, () => new PurchaseOrderCreated(id, NewId.NextGuid()),
            context.Message.Lines, SimulatedFailures.PurchaseOrder, sku => new PurchaseOrderFailed(id, $"supplier refused {sku}"));
    }

    /// <inheritdoc />
    public Task Consume(ConsumeContext<CancelPurchaseOrder> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return SimulatedFailures.Answer(options, outbox, context.Message.OrderId, context.CancellationToken, () => new PurchaseOrderCancelled(context.Message.OrderId));
    }
}

/// <summary>Inventory: books ordered parts.</summary>
public sealed class InventoryService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<UpdateInventory>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<UpdateInventory> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var id = context.Message.OrderId;
        return SimulatedFailures.Answer(options, outbox, id, context.CancellationToken, () => new InventoryUpdated(id),
            context.Message.Lines, SimulatedFailures.Inventory, sku => new InventoryUpdateFailed(id, $"inventory locked for {sku}"));
    }
}
