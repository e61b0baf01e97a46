using System.Diagnostics.Metrics;
using Integration.Caching;
using Integration.Host.Persistence;
using Integration.Patterns.Deadlines;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.Options;

namespace Integration.Host.Catalog;

/// <summary>
/// The catalog's read path under deadline budgets (<c>Integration:Deadlines</c>): the request works under its
/// <c>Integration-Deadline</c> header (none: the client budget from now); it is served within the gateway budget, the
/// catalog lookup (the service hop, through HybridCache) gets <c>min(left, Service)</c>, the database query
/// <c>min(left, Database)</c> as its cancellation and command timeout. The timeouts applied are answered in
/// <see cref="BudgetHeader"/>; queries are counted by <c>integration.catalog.queries</c> (meter <see cref="MeterName"/>).
/// </summary>
public sealed class CatalogReads
{
    /// <summary>
    /// Response header naming the timeout each hop got, in whole milliseconds, outermost first, e.g.
    /// <c>gateway=25000ms; service=20000ms; database=15000ms</c>; a hop not taken (the database on a cache hit) is left out.
    /// </summary>
    public const string BudgetHeader = "Integration-Deadline-Budget";

    /// <summary>Meter of the catalog: <c>integration.catalog.queries</c> counts database queries, tagged <c>query</c> = <c>part</c> or <c>list</c>.</summary>
    public const string MeterName = "Integration.Host.Catalog";

    readonly HybridCache _cache;
    readonly IOptions<CatalogOptions> _options;
    readonly IOptions<DeadlineBudgets> _budgets;
    readonly IServiceScopeFactory _scopes;
    readonly TimeProvider _time;
    readonly Counter<long> _queries;

    /// <summary>Creates the read path.</summary>
    public CatalogReads(HybridCache cache, IOptions<CatalogOptions> options, IOptions<DeadlineBudgets> budgets, IServiceScopeFactory scopes,
        TimeProvider time, IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _cache = cache;
        _options = options;
        _budgets = budgets;
        _scopes = scopes;
        _time = time;
        _queries = meters.Create(MeterName).CreateCounter<long>("integration.catalog.queries", description: "Database queries of the parts catalog");
    }

    /// <summary>The timeouts one request's hops got (what <see cref="BudgetHeader"/> answers).</summary>
    sealed class Applied
    {
        public long? Gateway;
        public long? Service;
        public long? Database;

        public override string ToString() => string.Join("; ", new[] { ("gateway", Gateway), ("service", Service), ("database", Database) }
            .Where(h => h.Item2 is not null).Select(h => $"{h.Item1}={h.Item2}ms"));
    }

    /// <summary>
    /// The gateway hop of a read: 400 for a malformed deadline, 504 (<c>{"error":"deadline-exceeded"}</c>) at once for one
    /// that has passed, or when a hop runs out of time; otherwise what <paramref name="serve"/> answers within the gateway budget.
    /// </summary>
    async Task<IResult> Serve(HttpContext http, Func<DeadlineHop, Applied, Task<IResult>> serve)
    {
        ArgumentNullException.ThrowIfNull(http);
        MessageDeadline? carried;
        try
        {
            carried = MessageDeadline.FromHttpHeader(http.Request.Headers[MessageDeadline.Header].ToString());
        }
        catch (FormatException e)
        {
            return Results.Json(new { error = "malformed-deadline", reason = e.Message }, statusCode: StatusCodes.Status400BadRequest);
        }

        var budgets = _budgets.Value;
        var deadline = carried ?? MessageDeadline.After(budgets.Client, _time);
        var applied = new Applied();
        try
        {
            using var gateway = deadline.StartHop(budgets.Gateway, http.RequestAborted, _time);
            applied.Gateway = gateway.TimeoutMilliseconds;
            return await serve(gateway, applied).ConfigureAwait(false);
        }
        catch (DeadlineExceededException e)
        {
            return Expired(deadline, e.Message);
        }
        catch (OperationCanceledException) when (!http.RequestAborted.IsCancellationRequested)
        {
            return Expired(deadline, $"the catalog did not answer within its hop timeouts ({applied}); the deadline was {deadline}");
        }
        finally
        {
            if (applied.Gateway is not null)
                http.Response.Headers[BudgetHeader] = applied.ToString();
        }
    }

    static IResult Expired(MessageDeadline deadline, string reason) =>
        Results.Json(new { error = "deadline-exceeded", reason, deadline = deadline.ToString() }, statusCode: StatusCodes.Status504GatewayTimeout);

    HybridCacheEntryOptions Entry() => new() { Expiration = _options.Value.CacheTtl, LocalCacheExpiration = _options.Value.CacheTtl };

    static void Mark(HttpContext http, bool hit) => http.Response.Headers["X-Cache"] = hit ? "hit" : "miss";

    /// <summary>The database hop: a scope's <see cref="HostDbContext"/> whose commands time out with the hop.</summary>
    async Task<T> Query<T>(string query, DeadlineHop service, Applied applied, CancellationToken token, Func<HostDbContext, CancellationToken, Task<T>> run)
    {
        using var database = service.Deadline.StartHop(_budgets.Value.Database, token, _time);
        applied.Database = database.TimeoutMilliseconds;
        await using var scope = _scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
        // Whole seconds, rounded up (0 would mean none); the token cancels at the exact moment.
        db.Database.SetCommandTimeout((int)Math.Max(1, Math.Ceiling(database.Timeout.TotalSeconds)));
        _queries.Add(1, new KeyValuePair<string, object?>("query", query));
        return await run(db, database.Token).ConfigureAwait(false);
    }

    /// <summary><c>GET /api/parts/{sku}</c>.</summary>
    public Task<IResult> GetPart(string sku, HttpContext http) => Serve(http, async (gateway, applied) =>
    {
        using var service = gateway.Deadline.StartHop(_budgets.Value.Service, gateway.Token, _time);
        applied.Service = service.TimeoutMilliseconds;
        var read = await _cache.ReadThroughAsync(CatalogFeature.PartKey(sku), async token =>
        {
            var part = await Query("part", service, applied, token,
                (db, t) => db.Set<Part>().AsNoTracking().SingleOrDefaultAsync(p => p.Sku == sku, t)).ConfigureAwait(false);
            return part?.ToView();
        }, Entry(), cancellationToken: service.Token).ConfigureAwait(false);
        Mark(http, read.Hit);
        return read.Value is null
            ? Results.Problem($"No part {sku}", statusCode: StatusCodes.Status404NotFound, title: "Not found")
            : Results.Ok(read.Value);
    });

    /// <summary><c>GET /api/parts?category=&amp;supplier=</c>.</summary>
    public Task<IResult> ListParts(string? category, string? supplier, HttpContext http) => Serve(http, async (gateway, applied) =>
    {
        category = string.IsNullOrWhiteSpace(category) ? null : category.Trim();
        supplier = string.IsNullOrWhiteSpace(supplier) ? null : supplier.Trim();
        var key = $"parts:category={category?.ToLowerInvariant()}&supplier={supplier?.ToLowerInvariant()}";
        using var service = gateway.Deadline.StartHop(_budgets.Value.Service, gateway.Token, _time);
        applied.Service = service.TimeoutMilliseconds;
        var read = await _cache.ReadThroughAsync<IReadOnlyList<PartView>>(key, token => new ValueTask<IReadOnlyList<PartView>>(
            Query<IReadOnlyList<PartView>>("list", service, applied, token, async (db, t) =>
            {
                var parts = db.Set<Part>().AsNoTracking();
                if (category is not null)
                    parts = parts.Where(p => p.Category.ToLower() == category.ToLowerInvariant());
                if (supplier is not null)
                    parts = parts.Where(p => p.Supplier.ToLower() == supplier.ToLowerInvariant());
                var list = await parts.OrderBy(p => p.Sku).ToListAsync(t).ConfigureAwait(false);
                return list.Select(p => p.ToView()).ToList();
            })), Entry(), [CatalogFeature.ListTag], service.Token).ConfigureAwait(false);
        Mark(http, read.Hit);
        return Results.Ok(read.Value);
    });
}
