using Integration.Host.Fulfillment;
using Integration.Host.Orders;
using Integration.Hosting;
using Integration.Operations;
using Integration.Outbox.Model;
using Integration.Sagas.Scheduling;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Persistence;

/// <summary>The sample's database: its own tables plus one call per framework library that keeps state.</summary>
public sealed class HostDbContext(DbContextOptions<HostDbContext> options) : DbContext(options)
{
    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        Order.ConfigureModel(modelBuilder);
        OrderFulfillmentState.ConfigureModel(modelBuilder);
        Inventory.InventoryLevel.ConfigureModel(modelBuilder);
        Catalog.Part.ConfigureModel(modelBuilder);
        modelBuilder.AddIntegrationOutbox();
        modelBuilder.AddIntegrationScheduler();
        modelBuilder.AddIntegrationOperations();
    }
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without starting the host.</summary>
public sealed class DesignTimeHostDbContextFactory : DesignTimeDbContextFactory<HostDbContext>;
