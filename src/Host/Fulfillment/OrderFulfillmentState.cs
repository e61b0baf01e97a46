using System.Text.Json;
using Integration.Host.Contracts;
using Integration.Sagas.Postgres;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Fulfillment;

/// <summary>One order's fulfillment saga, a row of <c>order_fulfillment</c>.</summary>
public sealed class OrderFulfillmentState : SagaStateMachineInstance
{
    /// <summary>The order id.</summary>
    public Guid CorrelationId { get; set; }

    /// <summary>Current state: ends in <c>Completed</c> or <c>Failed</c>.</summary>
    public string CurrentState { get; set; } = "";

    /// <summary>Ordering device.</summary>
    public string DeviceId { get; set; } = "";

    /// <summary>Region, for approvals.</summary>
    public string Region { get; set; } = "";

    /// <summary>Sum of the lines' quantities.</summary>
    public int TotalQuantity { get; set; }

    /// <summary>The order's lines as JSON.</summary>
    public string LinesJson { get; set; } = "[]";

    /// <summary>Steps in the order they happened, compensations included.</summary>
    public List<string> Steps { get; set; } = [];

    /// <summary>Why the order failed.</summary>
    public string? FailureReason { get; set; }

    /// <summary>The warehouse reservation, once made.</summary>
    public Guid? ReservationId { get; set; }

    /// <summary>The purchase order, once created.</summary>
    public Guid? PurchaseOrderId { get; set; }

    /// <summary>Token of the scheduled approval timeout, while one is pending.</summary>
    public Guid? ApprovalTimeoutTokenId { get; set; }

    /// <summary>When the order was submitted.</summary>
    public DateTimeOffset SubmittedAt { get; set; }

    /// <summary>When the saga last changed.</summary>
    public DateTimeOffset UpdatedAt { get; set; }

    /// <summary>The lines.</summary>
    public IReadOnlyList<OrderLine> Lines => JsonSerializer.Deserialize<List<OrderLine>>(LinesJson) ?? [];

    /// <summary>Records a step.</summary>
    public void Step(string step)
    {
        Steps.Add(step);
        UpdatedAt = DateTimeOffset.UtcNow;
    }

    /// <summary>Maps the saga table (the concurrency token is PostgreSQL's <c>xmin</c>).</summary>
    public static void ConfigureModel(ModelBuilder modelBuilder) =>
        modelBuilder.AddIntegrationSagaState<OrderFulfillmentState>("order_fulfillment", e =>
        {
            e.Property(s => s.CurrentState).HasMaxLength(64);
            e.Property(s => s.DeviceId).HasMaxLength(100);
            e.Property(s => s.Region).HasMaxLength(50);
            e.Property(s => s.LinesJson).HasColumnType("jsonb");
            e.Property(s => s.FailureReason).HasMaxLength(1000);
            e.Ignore(s => s.Lines);
            e.HasIndex(s => s.CurrentState);
        });
}
