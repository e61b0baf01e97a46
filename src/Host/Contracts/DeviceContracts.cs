namespace Integration.Host.Contracts;

/// <summary>
/// A warehouse device's stock movement, received as raw JSON <c>{"deviceId","sku","quantityChange","location"}</c> on
/// queue <c>inventory-updates</c> and applied in batches.
/// </summary>
public sealed record UpdateInventory(string DeviceId, string Sku, int QuantityChange, string Location);

/// <summary>Published through the outbox for every applied <see cref="UpdateInventory"/>; broadcast to every connected device.</summary>
public sealed record InventoryUpdated(string Sku, int Quantity, int QuantityChange, string DeviceId, string Location, DateTimeOffset UpdatedAt);

/// <summary>Published when an order's fulfillment saga changes state; delivered to the device that placed the order.</summary>
public sealed record OrderStatusChanged(Guid OrderId, string DeviceId, string Status, DateTimeOffset ChangedAt);

/// <summary>Published through the outbox when <c>PUT /api/parts/{sku}</c> changed the catalog; every host evicts its cached copies.</summary>
public sealed record PartUpdated(string Sku, string Category, string Supplier, DateTimeOffset UpdatedAt);
