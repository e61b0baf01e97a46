namespace Integration.Host.Orders;

/// <summary>
/// Where <c>GET /api/orders/{id}</c> learns how far an order got. The orders feature answers from the order row
/// alone when no reader is registered; the fulfillment saga registers one that reports the saga's state and steps.
/// </summary>
public interface IOrderProgressReader
{
    /// <summary>The order's progress, or null when nothing is known yet (e.g. the saga has not started).</summary>
    Task<OrderProgress?> GetAsync(Guid orderId, CancellationToken cancellationToken);
}

/// <summary>How far an order got.</summary>
/// <param name="Status">Current state; ends in exactly <c>Completed</c> or <c>Failed</c>.</param>
/// <param name="Steps">Steps in the order they happened, compensations included (e.g. <c>ReservationReleased</c>).</param>
/// <param name="FailureReason">Why the order failed, when it did.</param>
/// <param name="UpdatedAt">When the progress last changed.</param>
public sealed record OrderProgress(string Status, IReadOnlyList<string> Steps, string? FailureReason, DateTimeOffset UpdatedAt);
