using MassTransit;

namespace Integration.Host.Choreography;

/// <summary>
/// Stock: reserves parts for a request, and releases them when shipping fails or is cancelled. Fails deterministically
/// for SKUs starting with <c>FAIL-STOCK</c>.
/// </summary>
public sealed class FieldStockService : IConsumer<FieldPartsRequested>, IConsumer<ShipmentFailed>, IConsumer<ShipmentCancelled>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<FieldPartsRequested> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return m.Sku.StartsWith("FAIL-STOCK", StringComparison.OrdinalIgnoreCase)
            ? context.Publish(new FieldPartsUnavailable(m.CorrelationId, m.Sku, $"no stock for {m.Sku}"))
            : context.Publish(new FieldPartsReserved(m.CorrelationId, NewId.NextGuid(), m.DeviceId, m.Site, m.Sku, m.Quantity));
    }

    /// <inheritdoc />
    public Task Consume(ConsumeContext<ShipmentFailed> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return context.Publish(new FieldReservationReleased(m.CorrelationId, m.ReservationId, m.Reason));
    }

    /// <inheritdoc />
    public Task Consume(ConsumeContext<ShipmentCancelled> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return context.Publish(new FieldReservationReleased(m.CorrelationId, m.ReservationId, m.Reason));
    }
}

/// <summary>
/// Shipping: books a courier for reserved parts, and cancels the shipment when the device cannot be notified.
/// Fails deterministically for SKUs starting with <c>FAIL-SHIP</c>.
/// </summary>
public sealed class FieldShippingService : IConsumer<FieldPartsReserved>, IConsumer<DeviceNotificationFailed>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<FieldPartsReserved> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return m.Sku.StartsWith("FAIL-SHIP", StringComparison.OrdinalIgnoreCase)
            ? context.Publish(new ShipmentFailed(m.CorrelationId, m.ReservationId, $"no courier for {m.Site}"))
            : context.Publish(new ShipmentScheduled(m.CorrelationId, NewId.NextGuid(), m.ReservationId, m.DeviceId, DateTimeOffset.UtcNow.AddHours(6)));
    }

    /// <inheritdoc />
    public Task Consume(ConsumeContext<DeviceNotificationFailed> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return context.Publish(new ShipmentCancelled(m.CorrelationId, m.ShipmentId, m.ReservationId, m.Reason));
    }
}

/// <summary>Notifications: tells the device when its parts arrive. Devices whose id starts with <c>offline-</c> cannot be reached.</summary>
public sealed class DeviceNotificationService : IConsumer<ShipmentScheduled>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<ShipmentScheduled> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var m = context.Message;
        return m.DeviceId.StartsWith("offline-", StringComparison.OrdinalIgnoreCase)
            ? context.Publish(new DeviceNotificationFailed(m.CorrelationId, m.ShipmentId, m.ReservationId, $"device {m.DeviceId} unreachable"))
            : context.Publish(new DeviceNotified(m.CorrelationId, m.DeviceId, m.Eta));
    }
}
