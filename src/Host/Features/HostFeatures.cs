namespace Integration.Host.Features;

/// <summary>The features of the sample, in order. Add a feature by adding it here: no scanning, no conventions.</summary>
public static class HostFeatures
{
    /// <summary>All features of the sample integration.</summary>
    public static IReadOnlyList<IHostFeature> All { get; } =
    [
        new Parts.PartsRoutingFeature(),
        new Orders.OrdersFeature(),
        new Fulfillment.FulfillmentFeature(),
        new Choreography.ChoreographyFeature(),
        new Stock.StockFeature(),
        new Inventory.InventoryFeature(),
        new Devices.DevicesFeature(),
        new Catalog.CatalogFeature(),
    ];
}
