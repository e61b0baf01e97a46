using System.ComponentModel;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Catalog;

/// <summary>A part of the catalog (<c>parts</c> table), changed by <c>PUT /api/parts/{sku}</c>.</summary>
public sealed class Part
{
    /// <summary>Part number, the key.</summary>
    public string Sku { get; set; } = "";

    /// <summary>What it is.</summary>
    public string Name { get; set; } = "";

    /// <summary>Category, e.g. <c>hydraulics</c>.</summary>
    public string Category { get; set; } = "";

    /// <summary>Who supplies it.</summary>
    public string Supplier { get; set; } = "";

    /// <summary>Unit price.</summary>
    public decimal Price { get; set; }

    /// <summary>Last change.</summary>
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>What the API returns and the cache keeps.</summary>
    public PartView ToView() => new(Sku, Name, Category, Supplier, Price, UpdatedAt);

    /// <summary>Maps the catalog and seeds a few parts.</summary>
    public static void ConfigureModel(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<Part>(e =>
        {
            e.ToTable("parts");
            e.HasKey(p => p.Sku);
            e.Property(p => p.Sku).HasMaxLength(64);
            e.Property(p => p.Name).HasMaxLength(200);
            e.Property(p => p.Category).HasMaxLength(50);
            e.Property(p => p.Supplier).HasMaxLength(100);
            e.Property(p => p.Price).HasPrecision(12, 2);
            e.HasIndex(p => p.Category);
            var seeded = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
            e.HasData(
                new Part { Sku = "PUMP-1", Name = "Hydraulic pump 12 l/min", Category = "hydraulics", Supplier = "acme-hydraulics", Price = 420.00m, UpdatedAt = seeded },
                new Part { Sku = "VALVE-2", Name = "Check valve 3/8\"", Category = "hydraulics", Supplier = "acme-hydraulics", Price = 38.50m, UpdatedAt = seeded },
                new Part { Sku = "SENSOR-3", Name = "Pressure sensor 0-250 bar", Category = "electronics", Supplier = "volt-supply", Price = 96.00m, UpdatedAt = seeded },
                new Part { Sku = "CABLE-4", Name = "Sensor cable M12, 5 m", Category = "electronics", Supplier = "volt-supply", Price = 14.90m, UpdatedAt = seeded },
                new Part { Sku = "FILTER-5", Name = "Return filter element", Category = "general", Supplier = "fieldparts", Price = 22.00m, UpdatedAt = seeded });
        });
    }
}

/// <summary>A part as <c>GET /api/parts</c> returns it; immutable, so the in-process cache hands out the same instance.</summary>
[ImmutableObject(true)]
public sealed record PartView(string Sku, string Name, string Category, string Supplier, decimal Price, DateTimeOffset UpdatedAt);
