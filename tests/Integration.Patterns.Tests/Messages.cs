namespace Integration.Patterns.Tests;

public sealed record Order(string Id, string Kind, int Amount, string? Customer = null);

public sealed record CanonicalOrder(string OrderId, string Category, int Total);

public sealed record Batch(string Id, string[] Skus);

public sealed record Item(string BatchId, string Sku);

public sealed record Assembled(string Key, string[] Skus, string CompletedBy);

public sealed record Document(string Id, string Text);

public sealed record PartJson(string RequestId, string Sku, int Quantity);

public sealed record PartXml(string Id, PartXmlLine Line);

public sealed record PartXmlLine(string Sku, int Qty);

public sealed record PartCsv(string Request, string Sku, int Qty);

public sealed record CanonicalPart(string RequestId, string Sku, int Quantity, string Source);

public sealed record CustomerQuery(string Customer);

public sealed record CustomerInfo(string Customer, string Region);

public sealed record EnrichedOrder(string Id, string? Customer, string Region);
