namespace Integration.Patterns.Tests;

public sealed record Order(string Id, string Kind, int Amount, string? Customer = null);

public sealed record CanonicalOrder(string OrderId, string Category, int Total);
