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

    internal static string? Failing(IReadOnlyList<OrderLine> lines, string prefix) =>
        lines.FirstOrDefault(l => l.Sku.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))?.Sku;

    internal static Task Delay(IOptions<FulfillmentOptions> options, CancellationToken cancellationToken) =>
        options.Value.SimulatedServiceDelay > TimeSpan.Zero ? Task.Delay(options.Value.SimulatedServiceDelay, cancellationToken) : Task.CompletedTask;
}

/// <summary>
/// The warehouse: reserves parts and releases reservations. Like the other services it runs behind the inbox and replies
/// through the outbox, so a command redelivered after a crash is acknowledged as a duplicate instead of executed twice.
/// </summary>
public sealed class WarehouseService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<ReserveParts>, IConsumer<ReleaseReservation>
{
    /// <inheritdoc />
    public async Task Consume(ConsumeContext<ReserveParts> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        await SimulatedFailures.Delay(options, context.CancellationToken).ConfigureAwait(false);
        if (SimulatedFailures.Failing(context.Message.Lines, SimulatedFailures.Reserve) is { } sku)
            outbox.Publish(new PartsReservationFailed(context.Message.OrderId, $"no stock for {sku}"), context.Message.OrderId);
        else
            outbox.Publish(new PartsReserved(context.Message.OrderId, NewId.NextGuid()), context.Message.OrderId);
    }

    /// <inheritdoc />
    public async Task Consume(ConsumeContext<ReleaseReservation> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        await SimulatedFailures.Delay(options, context.CancellationToken).ConfigureAwait(false);
        outbox.Publish(new ReservationReleased(context.Message.OrderId), context.Message.OrderId);
    }
}

/// <summary>The supplier: creates and cancels purchase orders.</summary>
public sealed class PurchasingService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<CreatePurchaseOrder>, IConsumer<CancelPurchaseOrder>
{
    /// <inheritdoc />
    public async Task Consume(ConsumeContext<CreatePurchaseOrder> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        await SimulatedFailures.Delay(options, context.CancellationToken).ConfigureAwait(false);
        if (SimulatedFailures.Failing(context.Message.Lines, SimulatedFailures.PurchaseOrder) is { } sku)
            outbox.Publish(new PurchaseOrderFailed(context.Message.OrderId, $"supplier refused {sku}"), context.Message.OrderId);
        else
            outbox.Publish(new PurchaseOrderCreated(context.Message.OrderId, NewId.NextGuid()), context.Message.OrderId);
    }

    /// <inheritdoc />
    public async Task Consume(ConsumeContext<CancelPurchaseOrder> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        await SimulatedFailures.Delay(options, context.CancellationToken).ConfigureAwait(false);
        outbox.Publish(new PurchaseOrderCancelled(context.Message.OrderId), context.Message.OrderId);
    }
}

/// <summary>Inventory: books ordered parts.</summary>
public sealed class InventoryService(IOptions<FulfillmentOptions> options, IOutbox outbox) : IConsumer<UpdateInventory>
{
    /// <inheritdoc />
    public async Task Consume(ConsumeContext<UpdateInventory> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        await SimulatedFailures.Delay(options, context.CancellationToken).ConfigureAwait(false);
        if (SimulatedFailures.Failing(context.Message.Lines, SimulatedFailures.Inventory) is { } sku)
            outbox.Publish(new InventoryUpdateFailed(context.Message.OrderId, $"inventory locked for {sku}"), context.Message.OrderId);
        else
            outbox.Publish(new InventoryUpdated(context.Message.OrderId), context.Message.OrderId);
    }
}
