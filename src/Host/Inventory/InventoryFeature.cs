using Integration.Host.Contracts;
using Integration.Host.Features;
using Integration.Host.Persistence;
using Integration.Outbox.Batching;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Inventory;

/// <summary>
/// Inventory updates from warehouse devices, applied in batches: raw JSON <c>{"deviceId","sku","quantityChange","location"}</c>
/// on queue <c>inventory-updates</c> (<see cref="UpdateInventory"/>) is collected into batches and applied in one transaction
/// per batch with the inbox (each message once) and an <see cref="InventoryUpdated"/> per update through the outbox. A bad
/// message (not JSON, a field missing) goes to <c>inventory-updates_error</c> with the reason, the rest of its batch
/// commits. <c>GET /api/inventory/{sku}</c> returns the level summed over locations, and per location.
/// </summary>
public sealed class InventoryFeature : IHostFeature
{
    /// <summary>The queue devices send inventory updates to.</summary>
    public const string Queue = "inventory-updates";

    /// <summary>Longest accepted part number.</summary>
    public const int MaxSkuLength = 64;

    /// <summary>Longest accepted location.</summary>
    public const int MaxLocationLength = 100;

    /// <summary>Longest accepted device id.</summary>
    public const int MaxDeviceIdLength = 100;

    /// <inheritdoc />
    public string Name => "inventory";

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        // Settings: Integration:Batching:inventory-updates:MessageLimit, TimeLimit, ConcurrencyLimit (validated at start).
        bus.AddIntegrationBatch<UpdateInventory, InventoryBatchHandler>(Queue,
            // Devices that are not MassTransit may leave out message_id: such an update is applied (at least once) rather than refused.
            batch => batch.RequireMessageId = false,
            endpoint => endpoint.UseRawJsonDeserializer(RawSerializerOptions.AnyMessageType, isDefault: true));
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapGet("/api/inventory/{sku}", async (string sku, HostDbContext db, CancellationToken cancellationToken) =>
        {
            var levels = await db.Set<InventoryLevel>().AsNoTracking().Where(l => l.Sku == sku).OrderBy(l => l.Location)
                .ToListAsync(cancellationToken).ConfigureAwait(false);
            if (levels.Count == 0)
                return Results.Problem($"No inventory recorded for sku {sku}", statusCode: StatusCodes.Status404NotFound, title: "Not found");
            return Results.Ok(new
            {
                sku,
                quantity = levels.Sum(l => l.Quantity),
                locations = levels.Select(l => new { location = l.Location, quantity = l.Quantity, updatedAt = l.UpdatedAt }),
                updatedAt = levels.Max(l => l.UpdatedAt),
            });
        });
    }
}

/// <summary>
/// Applies a batch of inventory updates: one upsert per (sku, location) with the batch's summed change (rows locked in
/// key order, so concurrent batches on several hosts neither lose updates nor deadlock), then an <see cref="InventoryUpdated"/>
/// per update, carrying the part's level right after it.
/// </summary>
public sealed class InventoryBatchHandler(HostDbContext db, IOutbox outbox, TimeProvider time) : IBatchHandler<UpdateInventory>
{
    /// <inheritdoc />
    public string? Validate(UpdateInventory message)
    {
        if (message is null) return "the body must be a JSON object {\"deviceId\",\"sku\",\"quantityChange\",\"location\"}";
        var missing = new List<string>();
        if (string.IsNullOrWhiteSpace(message.DeviceId)) missing.Add("deviceId");
        if (string.IsNullOrWhiteSpace(message.Sku)) missing.Add("sku");
        if (message.QuantityChange == 0) missing.Add("quantityChange (a non-zero integer)");
        if (string.IsNullOrWhiteSpace(message.Location)) missing.Add("location");
        if (missing.Count > 0) return $"inventory update is missing {string.Join(", ", missing)}";
        if (message.Sku.Length > InventoryFeature.MaxSkuLength) return $"sku must be at most {InventoryFeature.MaxSkuLength} characters";
        if (message.Location.Length > InventoryFeature.MaxLocationLength) return $"location must be at most {InventoryFeature.MaxLocationLength} characters";
        if (message.DeviceId.Length > InventoryFeature.MaxDeviceIdLength) return $"deviceId must be at most {InventoryFeature.MaxDeviceIdLength} characters";
        return null;
    }

    /// <inheritdoc />
    public async Task HandleAsync(IReadOnlyList<UpdateInventory> messages, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var now = time.GetUtcNow();
        var changes = messages.GroupBy(m => (m.Sku, m.Location))
            .Select(g => (g.Key.Sku, g.Key.Location, Change: g.Sum(m => (long)m.QuantityChange)))
            .OrderBy(c => c.Sku, StringComparer.Ordinal).ThenBy(c => c.Location, StringComparer.Ordinal)
            .ToList();
        var skus = changes.Select(c => c.Sku).ToArray();
        var locations = changes.Select(c => c.Location).ToArray();
        var deltas = changes.Select(c => checked((int)c.Change)).ToArray();
        await db.Database.ExecuteSqlAsync($"""
            INSERT INTO inventory_levels (sku, location, quantity, updated_at)
            SELECT s, l, d, {now} FROM unnest({skus}::text[], {locations}::text[], {deltas}::integer[]) AS u(s, l, d) ORDER BY s, l
            ON CONFLICT (sku, location) DO UPDATE SET quantity = inventory_levels.quantity + excluded.quantity, updated_at = excluded.updated_at
            """, cancellationToken).ConfigureAwait(false);

        var distinctSkus = skus.Distinct().ToArray();
        var totals = await db.Set<InventoryLevel>().Where(l => distinctSkus.Contains(l.Sku)).GroupBy(l => l.Sku)
            .Select(g => new { Sku = g.Key, Quantity = g.Sum(l => l.Quantity) })
            .ToDictionaryAsync(t => t.Sku, t => t.Quantity, cancellationToken).ConfigureAwait(false);
        // The level before this batch, then each update in arrival order.
        var running = totals.ToDictionary(t => t.Key, t => t.Value - messages.Where(m => m.Sku == t.Key).Sum(m => m.QuantityChange));
        foreach (var message in messages)
        {
            running[message.Sku] += message.QuantityChange;
            outbox.Publish(new InventoryUpdated(message.Sku, running[message.Sku], message.QuantityChange, message.DeviceId, message.Location, now));
        }
    }
}
