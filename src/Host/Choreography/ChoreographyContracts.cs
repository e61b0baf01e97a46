using MassTransit;

namespace Integration.Host.Choreography;

// A field technician's parts request, handled by services that react to each other's events with no coordinator.
// Every event carries the request id as its CorrelationId, so the whole chain is traceable by it; each event is
// self-contained (it repeats what the next service needs).

/// <summary>A technician on site needs parts. Starts the chain.</summary>
public sealed record FieldPartsRequested(Guid CorrelationId, string DeviceId, string Site, string Sku, int Quantity) : CorrelatedBy<Guid>;

/// <summary>Stock reserved the parts.</summary>
public sealed record FieldPartsReserved(Guid CorrelationId, Guid ReservationId, string DeviceId, string Site, string Sku, int Quantity) : CorrelatedBy<Guid>;

/// <summary>Stock has none: the chain ends, nothing to compensate.</summary>
public sealed record FieldPartsUnavailable(Guid CorrelationId, string Sku, string Reason) : CorrelatedBy<Guid>;

/// <summary>Shipping booked a courier.</summary>
public sealed record ShipmentScheduled(Guid CorrelationId, Guid ShipmentId, Guid ReservationId, string DeviceId, DateTimeOffset Eta) : CorrelatedBy<Guid>;

/// <summary>Shipping could not book a courier; stock compensates by releasing the reservation.</summary>
public sealed record ShipmentFailed(Guid CorrelationId, Guid ReservationId, string Reason) : CorrelatedBy<Guid>;

/// <summary>The device was told when its parts arrive. The chain's happy end.</summary>
public sealed record DeviceNotified(Guid CorrelationId, string DeviceId, DateTimeOffset Eta) : CorrelatedBy<Guid>;

/// <summary>The device could not be reached; shipping compensates by cancelling the shipment.</summary>
public sealed record DeviceNotificationFailed(Guid CorrelationId, Guid ShipmentId, Guid ReservationId, string Reason) : CorrelatedBy<Guid>;

/// <summary>Compensation by shipping; stock then releases the reservation.</summary>
public sealed record ShipmentCancelled(Guid CorrelationId, Guid ShipmentId, Guid ReservationId, string Reason) : CorrelatedBy<Guid>;

/// <summary>Compensation by stock. The chain's end after a failure.</summary>
public sealed record FieldReservationReleased(Guid CorrelationId, Guid ReservationId, string Reason) : CorrelatedBy<Guid>;
