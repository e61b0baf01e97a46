using Integration.Host.Features;
using Integration.Host.Orders;
using Integration.Host.Persistence;
using Integration.Hosting;
using Integration.Hosting.Partitioning;
using Integration.Host.Contracts;
using Integration.Outbox.Inbox;
using Integration.Sagas.Postgres;
using Integration.Sagas.Scheduling;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Integration.Host.Fulfillment;

/// <summary>
/// The order fulfillment saga (orchestration) with its PostgreSQL repository, the durable Quartz scheduler for its
/// approval timeout, the simulated downstream services, and <c>POST /api/orders/{id}/approve</c> and <c>/reject</c>.
/// </summary>
public sealed class FulfillmentFeature : IHostFeature
{
    /// <summary>Request body of <c>/approve</c> and <c>/reject</c> (optional).</summary>
    public sealed record ApprovalDecision(string? By, string? Reason);

    const string WarehouseQueue = "fulfillment-warehouse", PurchasingQueue = "fulfillment-purchasing", InventoryQueue = "fulfillment-inventory";

    /// <inheritdoc />
    public string Name => "fulfillment";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddIntegrationOptions<FulfillmentOptions>(FulfillmentOptions.Section, FulfillmentOptions.Validate);
        builder.Services.AddScoped<IOrderProgressReader, FulfillmentProgressReader>();
        var settings = builder.Configuration.GetSection(FulfillmentOptions.Section).Get<FulfillmentOptions>() ?? new FulfillmentOptions();
        if (settings.Partitions > 0)
        {
            // Integration:Fulfillment:Partitions: every event the saga receives is routed by its order id to one of the
            // partition queues; each host consumes them all, the broker keeps one consumer active per partition.
            builder.Services.AddIntegrationPartitionedQueue(SagaQueue, p =>
            {
                p.Partitions = settings.Partitions;
                p.ConcurrentMessageLimit = settings.PartitionConcurrency;
                p.SettingName = $"{FulfillmentOptions.Section}:Partitions";
                p.Key<OrderSubmitted>(m => m.OrderId)
                    .Key<PartsReserved>(m => m.OrderId)
                    .Key<PartsReservationFailed>(m => m.OrderId)
                    .Key<ReservationReleased>(m => m.OrderId)
                    .Key<OrderApproved>(m => m.OrderId)
                    .Key<OrderRejected>(m => m.OrderId)
                    .Key<PurchaseOrderCreated>(m => m.OrderId)
                    .Key<PurchaseOrderFailed>(m => m.OrderId)
                    .Key<PurchaseOrderCancelled>(m => m.OrderId)
                    .Key<InventoryUpdated>(m => m.OrderId)
                    .Key<InventoryUpdateFailed>(m => m.OrderId);
            }, (context, endpoint) =>
            {
                endpoint.UseIntegrationScheduler(context);
                endpoint.ConfigureSaga<OrderFulfillmentState>(context);
            });
        }
    }

    /// <summary>The saga's queue (or, partitioned, the base name of its partition queues).</summary>
    public const string SagaQueue = "order-fulfillment";

    /// <summary>
    /// Immediate retries of the saga and the services (about 8.5 s in all): rides out a short broker or database outage;
    /// past it the message goes to its <c>_error</c> queue with the exception, to be replayed from the control bus.
    /// </summary>
    static void Retry(IRetryConfigurator retry) => retry.Intervals(100, 500, 1000, 2000, 5000);

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(configuration);
        var settings = configuration.GetSection(FulfillmentOptions.Section).Get<FulfillmentOptions>() ?? new FulfillmentOptions();
        var concurrencyMode = settings.ConcurrencyMode;
        bus.AddIntegrationScheduler();
        var saga = bus.AddSagaStateMachine<OrderFulfillmentStateMachine, OrderFulfillmentState>((context, saga) => saga.UseMessageRetry(Retry));
        if (settings.Partitions > 0)
            saga.ExcludeFromConfigureEndpoints(); // the partition endpoints (AddServices) configure it
        else
            saga.Endpoint(e => e.Name = SagaQueue);
        saga.PostgresRepository<HostDbContext>(o =>
            {
                o.ConcurrencyMode = concurrencyMode; // Integration:Fulfillment:ConcurrencyMode
                o.TransactionalOutbox = true;        // commands and timeouts commit with the saga's state; the relay sends them
                if (settings.Partitions > 0 && concurrencyMode == SagaConcurrencyMode.Optimistic)
                    o.InstanceCacheSize = settings.InstanceCacheSize; // a partition's orders are this host's while it is active on it
            });
        bus.AddConsumer<WarehouseService>().Endpoint(e => e.Name = WarehouseQueue);
        bus.AddConsumer<PurchasingService>().Endpoint(e => e.Name = PurchasingQueue);
        bus.AddConsumer<InventoryService>().Endpoint(e => e.Name = InventoryQueue);
        // The services are idempotent consumers: inbox row, replies (outbox rows) and any writes commit together. The
        // retry wraps the inbox, so each attempt is a transaction of its own: a database outage of a few seconds is
        // ridden out instead of sending the command to its _error queue (and leaving the order's saga waiting).
        bus.AddConfigureEndpointsCallback((context, name, endpoint) =>
        {
            if (name is not (WarehouseQueue or PurchasingQueue or InventoryQueue))
                return;
            endpoint.UseMessageRetry(Retry);
            endpoint.UseIntegrationInbox(context);
        });
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPost("/api/orders/{id:guid}/approve", (Guid id, ApprovalDecision? decision, HostDbContext db, IPublishEndpoint publish, CancellationToken ct) =>
            Decide(id, db, ct, () => publish.Publish(new OrderApproved(id, decision?.By), ct)));
        endpoints.MapPost("/api/orders/{id:guid}/reject", (Guid id, ApprovalDecision? decision, HostDbContext db, IPublishEndpoint publish, CancellationToken ct) =>
            Decide(id, db, ct, () => publish.Publish(new OrderRejected(id, decision?.Reason), ct)));
    }

    static async Task<IResult> Decide(Guid id, HostDbContext db, CancellationToken cancellationToken, Func<Task> publish)
    {
        var state = await db.Set<OrderFulfillmentState>().AsNoTracking().Where(s => s.CorrelationId == id).Select(s => s.CurrentState)
            .SingleOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        if (state is null)
            return Results.Problem($"No order {id} in fulfillment", statusCode: StatusCodes.Status404NotFound, title: "Not found");
        if (state != nameof(OrderFulfillmentStateMachine.AwaitingApproval))
            return Results.Problem($"Order {id} is {state}, not awaiting approval", statusCode: StatusCodes.Status409Conflict, title: "Not awaiting approval");
        await publish().ConfigureAwait(false);
        return Results.Accepted($"/api/orders/{id}", new { orderId = id });
    }
}
