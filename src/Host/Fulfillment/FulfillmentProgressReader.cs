using Integration.Host.Orders;
using Integration.Host.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Fulfillment;

/// <summary>Answers <c>GET /api/orders/{id}</c> with the fulfillment saga's state, steps and failure reason.</summary>
public sealed class FulfillmentProgressReader(HostDbContext db) : IOrderProgressReader
{
    /// <inheritdoc />
    public async Task<OrderProgress?> GetAsync(Guid orderId, CancellationToken cancellationToken)
    {
        var saga = await db.Set<OrderFulfillmentState>().AsNoTracking()
            .SingleOrDefaultAsync(s => s.CorrelationId == orderId, cancellationToken).ConfigureAwait(false);
        return saga is null ? null : new OrderProgress(saga.CurrentState, saga.Steps, saga.FailureReason, saga.UpdatedAt);
    }
}
