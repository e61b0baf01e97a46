namespace Integration.Patterns.Tests;

public sealed record Order(string Id, string Kind, int Amount, string? Customer = null);

public sealed record CanonicalOrder(string OrderId, string Category, int Total);

public sealed record Batch(string Id, string[] Skus);

public sealed record Item(string BatchId, string Sku);

public sealed record Assembled(string Key, string[] Skus, string CompletedBy);

public sealed record Document(string Id, string Text);
