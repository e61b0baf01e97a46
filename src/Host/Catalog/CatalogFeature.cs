using Integration.Caching;
using Integration.Host.Contracts;
using Integration.Host.Features;
using Integration.Host.Persistence;
using Integration.Hosting;
using Integration.Host.Parts;
using Integration.Outbox.Writing;
using Integration.Patterns.Deadlines;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Hybrid;

namespace Integration.Host.Catalog;

/// <summary>
/// The parts catalog, cache-aside: <c>GET /api/parts/{sku}</c> and <c>GET /api/parts?category=&amp;supplier=</c> read
/// through HybridCache (<c>Integration:Catalog:CacheTtl</c>, header <c>X-Cache: hit|miss</c>); <c>PUT /api/parts/{sku}</c>
/// stores the part and publishes <see cref="PartUpdated"/> through the outbox in one transaction, and every host evicts
/// the part and every cached list when the event reaches its own queue. Reads work under deadline budgets
/// (<see cref="CatalogReads"/>): header <c>Integration-Deadline</c> in, <c>Integration-Deadline-Budget</c> out, 504 once it has passed.
/// </summary>
public sealed class CatalogFeature : IHostFeature
{
    /// <summary>Request body of <c>PUT /api/parts/{sku}</c>: the whole part.</summary>
    public sealed record PutPart(string? Name, string? Category, string? Supplier, decimal? Price);

    /// <summary>Tag of every cached list of parts (a change to any part may change any list).</summary>
    public const string ListTag = "parts-list";

    /// <summary>Cache key of one part.</summary>
    public static string PartKey(string sku) => $"part:{sku}";

    /// <inheritdoc />
    public string Name => "catalog";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddIntegrationOptions<CatalogOptions>(CatalogOptions.Section, CatalogOptions.Validate);
        builder.Services.AddHybridCache();
        // The read path's budgets; validated at start by the parts routing feature, which binds the same section.
        builder.Services.AddOptions<DeadlineBudgets>().BindConfiguration(PartsRoutingFeature.DeadlinesSection);
        builder.Services.AddSingleton<CatalogReads>();
    }

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.AddCacheInvalidation(caching => caching
            .Invalidate<PartUpdated>(m => [PartKey(m.Sku)], tags: m => [ListTag]));
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapGet("/api/parts/{sku}", GetPart);
        endpoints.MapGet("/api/parts", ListParts);
        endpoints.MapPut("/api/parts/{sku}", Put);
    }

    static Task<IResult> GetPart(string sku, HttpContext http, CatalogReads reads) => reads.GetPart(sku, http);

    static Task<IResult> ListParts(string? category, string? supplier, HttpContext http, CatalogReads reads) => reads.ListParts(category, supplier, http);

    static Dictionary<string, string[]> Validate(string sku, PutPart? body)
    {
        var errors = new Dictionary<string, string[]>();
        if (string.IsNullOrWhiteSpace(sku) || sku.Length > 64)
            errors["sku"] = ["is required, at most 64 characters"];
        if (body is null)
        {
            errors["body"] = ["a JSON part {name, category, supplier, price} is required"];
            return errors;
        }

        if (string.IsNullOrWhiteSpace(body.Name) || body.Name.Length > 200)
            errors["name"] = ["is required, at most 200 characters"];
        if (string.IsNullOrWhiteSpace(body.Category) || body.Category.Length > 50)
            errors["category"] = ["is required, at most 50 characters"];
        if (string.IsNullOrWhiteSpace(body.Supplier) || body.Supplier.Length > 100)
            errors["supplier"] = ["is required, at most 100 characters"];
        if (body.Price is not (>= 0 and <= 9_999_999_999.99m))
            errors["price"] = ["is required, 0 to 9999999999.99"];
        return errors;
    }

    static async Task<IResult> Put(string sku, PutPart? body, HostDbContext db, IOutbox outbox, HybridCache cache, TimeProvider time,
        CancellationToken cancellationToken)
    {
        var errors = Validate(sku, body);
        if (errors.Count > 0)
            return Results.ValidationProblem(errors);

        var part = await db.Set<Part>().SingleOrDefaultAsync(p => p.Sku == sku, cancellationToken).ConfigureAwait(false);
        var created = part is null;
        if (part is null)
        {
            part = new Part { Sku = sku };
            db.Add(part);
        }

        part.Name = body!.Name!.Trim();
        part.Category = body.Category!.Trim();
        part.Supplier = body.Supplier!.Trim();
        part.Price = body.Price!.Value;
        part.UpdatedAt = time.GetUtcNow();
        outbox.Publish(new PartUpdated(part.Sku, part.Category, part.Supplier, part.UpdatedAt));
        // One SaveChanges, one transaction: the part and its PartUpdated commit together or not at all.
        await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);

        // This host's next read is fresh at once; the others (and this one again) evict when PartUpdated reaches their queues.
        await cache.RemoveAsync(PartKey(sku), cancellationToken).ConfigureAwait(false);
        await cache.RemoveByTagAsync(ListTag, cancellationToken).ConfigureAwait(false);
        return created ? Results.Created($"/api/parts/{sku}", part.ToView()) : Results.Ok(part.ToView());
    }
}
