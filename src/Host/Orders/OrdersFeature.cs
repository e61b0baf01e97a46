using Integration.Host.Contracts;
using Integration.Host.Features;
using Integration.Host.Persistence;
using Integration.Outbox;
using Integration.Outbox.Leases;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Integration.Host.Orders;

/// <summary>
/// <c>POST /api/orders</c> stores an order and publishes <see cref="OrderSubmitted"/> through the transactional outbox
/// in one transaction; <c>GET /api/orders/{id}</c> returns it with its progress.
/// </summary>
public sealed class OrdersFeature : IHostFeature
{
    /// <summary>Request body of <c>POST /api/orders</c>.</summary>
    public sealed record SubmitOrder(Guid? OrderId, string? DeviceId, string? Region, List<SubmitOrderLine>? Lines);

    /// <summary>A requested line.</summary>
    public sealed record SubmitOrderLine(string? Sku, int Quantity);

    /// <inheritdoc />
    public string Name => "orders";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddIntegrationOutbox<HostDbContext>();   // binds and validates Integration:Outbox, wires the wake-up interceptor
        // One host runs the cleanups (outbox, inbox, claim check, sweeps, message store retention): Integration:Housekeeping.
        builder.Services.AddIntegrationHousekeeping<HostDbContext>();
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPost("/api/orders", Submit);
        endpoints.MapGet("/api/orders/{id:guid}", Get);
    }

    static Dictionary<string, string[]> Validate(SubmitOrder? request)
    {
        var errors = new Dictionary<string, string[]>();
        void Error(string field, string message) => errors[field] = [.. errors.GetValueOrDefault(field, []), message];
        if (request is null)
        {
            Error("body", "a JSON order is required");
            return errors;
        }

        if (request.OrderId == Guid.Empty)
            Error("orderId", "must not be the empty GUID (leave it out to have one assigned)");
        if (string.IsNullOrWhiteSpace(request.DeviceId) || request.DeviceId.Length > 100)
            Error("deviceId", "is required, at most 100 characters");
        if (string.IsNullOrWhiteSpace(request.Region) || request.Region.Length > 50)
            Error("region", "is required, at most 50 characters");
        if (request.Lines is not { Count: > 0 and <= 100 })
            Error("lines", "1 to 100 lines are required");
        for (var i = 0; i < (request.Lines?.Count ?? 0); i++)
        {
            var line = request.Lines![i];
            if (line is null || string.IsNullOrWhiteSpace(line.Sku) || line.Sku.Length > 64)
                Error($"lines[{i}].sku", "is required, at most 64 characters");
            if (line is not null && line.Quantity is < 1 or > 100_000)
                Error($"lines[{i}].quantity", "must be 1 to 100000");
        }

        return errors;
    }

    static async Task<IResult> Submit(SubmitOrder? request, HostDbContext db, IOutbox outbox, TimeProvider time, CancellationToken cancellationToken)
    {
        var errors = Validate(request);
        if (errors.Count > 0)
            return Results.ValidationProblem(errors);

        var orderId = request!.OrderId ?? Guid.CreateVersion7();
        if (await db.Set<Order>().AsNoTracking().AnyAsync(o => o.OrderId == orderId, cancellationToken).ConfigureAwait(false))
            return Results.Accepted($"/api/orders/{orderId}", new { orderId, duplicate = true });

        var order = new Order
        {
            OrderId = orderId,
            DeviceId = request.DeviceId!,
            Region = request.Region!,
            CreatedAt = time.GetUtcNow(),
            Lines = request.Lines!.Select(l => new OrderLineRecord { Sku = l.Sku!, Quantity = l.Quantity }).ToList(),
        };
        db.Add(order);
        outbox.Publish(new OrderSubmitted(order.OrderId, order.DeviceId, order.Region,
            order.Lines.Select(l => new OrderLine(l.Sku, l.Quantity)).ToList(), order.CreatedAt), correlationId: order.OrderId);
        try
        {
            // One SaveChanges, one transaction: the order and its OrderSubmitted commit together or not at all.
            await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateException exception) when (exception.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            // The same orderId posted concurrently: the other request stored it; nothing of ours was written.
            return Results.Accepted($"/api/orders/{orderId}", new { orderId, duplicate = true });
        }

        return Results.Accepted($"/api/orders/{orderId}", new { orderId });
    }

    static async Task<IResult> Get(Guid id, HostDbContext db, IServiceProvider services, CancellationToken cancellationToken)
    {
        var order = await db.Set<Order>().AsNoTracking().SingleOrDefaultAsync(o => o.OrderId == id, cancellationToken).ConfigureAwait(false);
        if (order is null)
            return Results.Problem($"No order {id}", statusCode: StatusCodes.Status404NotFound, title: "Not found");
        var progress = services.GetService<IOrderProgressReader>() is { } reader
            ? await reader.GetAsync(id, cancellationToken).ConfigureAwait(false)
            : null;
        return Results.Ok(new
        {
            orderId = order.OrderId,
            status = progress?.Status ?? order.Status,
            steps = progress?.Steps ?? [],
            failureReason = progress?.FailureReason,
            deviceId = order.DeviceId,
            region = order.Region,
            lines = order.Lines.Select(l => new { sku = l.Sku, quantity = l.Quantity }),
            createdAt = order.CreatedAt,
            updatedAt = progress?.UpdatedAt ?? order.CreatedAt,
        });
    }
}
