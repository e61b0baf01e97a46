using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Orders;

/// <summary>A parts order as stored by <c>POST /api/orders</c>.</summary>
public sealed class Order
{
    /// <summary>Identity; a client-supplied id is the idempotency key.</summary>
    public Guid OrderId { get; set; }

    /// <summary>Device that ordered.</summary>
    public string DeviceId { get; set; } = "";

    /// <summary>Region, for approvals.</summary>
    public string Region { get; set; } = "";

    /// <summary>Status as the orders service knows it (the saga's state wins in <c>GET</c> when there is one).</summary>
    public string Status { get; set; } = "Submitted";

    /// <summary>When it was stored.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>What was ordered.</summary>
    public List<OrderLineRecord> Lines { get; set; } = [];

    /// <summary>Maps orders; lines are a JSON column of the order row.</summary>
    public static void ConfigureModel(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<Order>(e =>
        {
            e.ToTable("orders");
            e.HasKey(o => o.OrderId);
            e.Property(o => o.DeviceId).HasMaxLength(100);
            e.Property(o => o.Region).HasMaxLength(50);
            e.Property(o => o.Status).HasMaxLength(40);
            e.OwnsMany(o => o.Lines, l => l.ToJson("lines"));
        });
    }
}

/// <summary>One line of a stored order.</summary>
public sealed class OrderLineRecord
{
    /// <summary>Part number.</summary>
    public string Sku { get; set; } = "";

    /// <summary>How many.</summary>
    public int Quantity { get; set; }
}
