namespace Integration.Host.Contracts;

/// <summary>A line of a parts order.</summary>
public sealed record OrderLine(string Sku, int Quantity);

/// <summary>Published through the transactional outbox when <c>POST /api/orders</c> stored an order; starts the fulfillment saga.</summary>
public sealed record OrderSubmitted(Guid OrderId, string DeviceId, string Region, IReadOnlyList<OrderLine> Lines, DateTimeOffset SubmittedAt);
