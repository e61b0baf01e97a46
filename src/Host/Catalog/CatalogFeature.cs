using Integration.Caching;
using Integration.Host.Contracts;
using Integration.Host.Features;
using Integration.Host.Persistence;
using Integration.Hosting;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.Options;

namespace Integration.Host.Catalog;

/// <summary>
/// The parts catalog, cache-aside: <c>GET /api/parts/{sku}</c> and <c>GET /api/parts?category=&amp;supplier=</c> read
/// through HybridCache (<c>Integration:Catalog:CacheTtl</c>, header <c>X-Cache: hit|miss</c>); <c>PUT /api/parts/{sku}</c>
/// stores the part and publishes <see cref="PartUpdated"/> through the outbox in one transaction, and every host evicts
/// the part and every cached list when the event reaches its own queue.
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

    static HybridCacheEntryOptions Entry(IOptions<CatalogOptions> options) =>
        new() { Expiration = options.Value.CacheTtl, LocalCacheExpiration = options.Value.CacheTtl };

    static void Mark(HttpContext http, bool hit) => http.Response.Headers["X-Cache"] = hit ? "hit" : "miss";

    static async Task<IResult> GetPart(string sku, HttpContext http, HybridCache cache, IOptions<CatalogOptions> options, IServiceScopeFactory scopes,
        CancellationToken cancellationToken)
    {
        var read = await cache.ReadThroughAsync(PartKey(sku), async token =>
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
            var part = await db.Set<Part>().AsNoTracking().SingleOrDefaultAsync(p => p.Sku == sku, token).ConfigureAwait(false);
            return part?.ToView();
        }, Entry(options), cancellationToken: cancellationToken).ConfigureAwait(false);
        Mark(http, read.Hit);
        return read.Value is null
            ? Results.Problem($"No part {sku}", statusCode: StatusCodes.Status404NotFound, title: "Not found")
            : Results.Ok(read.Value);
    }

    static async Task<IResult> ListParts(string? category, string? supplier, HttpContext http, HybridCache cache, IOptions<CatalogOptions> options,
        IServiceScopeFactory scopes, CancellationToken cancellationToken)
    {
        category = string.IsNullOrWhiteSpace(category) ? null : category.Trim();
        supplier = string.IsNullOrWhiteSpace(supplier) ? null : supplier.Trim();
        var key = $"parts:category={category?.ToLowerInvariant()}&supplier={supplier?.ToLowerInvariant()}";
        var read = await cache.ReadThroughAsync<IReadOnlyList<PartView>>(key, async token =>
        {
            await using var scope = scopes.CreateAsyncScope();
            var parts = scope.ServiceProvider.GetRequiredService<HostDbContext>().Set<Part>().AsNoTracking();
            if (category is not null)
                parts = parts.Where(p => p.Category.ToLower() == category.ToLowerInvariant());
            if (supplier is not null)
                parts = parts.Where(p => p.Supplier.ToLower() == supplier.ToLowerInvariant());
            var list = await parts.OrderBy(p => p.Sku).ToListAsync(token).ConfigureAwait(false);
            return list.Select(p => p.ToView()).ToList();
        }, Entry(options), [ListTag], cancellationToken).ConfigureAwait(false);
        Mark(http, read.Hit);
        return Results.Ok(read.Value);
    }

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
