using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Inventory;

/// <summary>How many of a part one location holds (the sum over locations is the part's level).</summary>
public sealed class InventoryLevel
{
    /// <summary>Part number.</summary>
    public string Sku { get; set; } = "";

    /// <summary>Warehouse, truck or bin.</summary>
    public string Location { get; set; } = "";

    /// <summary>Units held (negative when more was taken out than was recorded in).</summary>
    public int Quantity { get; set; }

    /// <summary>When the last update was applied.</summary>
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>Maps <c>inventory_levels</c>: one row per (sku, location).</summary>
    public static void ConfigureModel(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<InventoryLevel>(e =>
        {
            e.ToTable("inventory_levels");
            e.HasKey(l => new { l.Sku, l.Location });
            e.Property(l => l.Sku).HasColumnName("sku").HasMaxLength(InventoryFeature.MaxSkuLength);
            e.Property(l => l.Location).HasColumnName("location").HasMaxLength(InventoryFeature.MaxLocationLength);
            e.Property(l => l.Quantity).HasColumnName("quantity");
            e.Property(l => l.UpdatedAt).HasColumnName("updated_at");
        });
    }
}
