using System.Text;
using System.Text.Json;
using Integration.Outbox.Leases;
using Integration.Patterns.Routing;
using Integration.Patterns.Postgres.Storage;
using MassTransit;
using MassTransit.Context;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.Postgres.ClaimCheck;

/// <summary>A stored payload, waiting to be checked out.</summary>
internal sealed class ClaimState
{
    /// <summary>The claim id (on the wire in the <see cref="ClaimTicket"/>).</summary>
    public Guid Id { get; set; }

    /// <summary>.NET type name of the payload.</summary>
    public string MessageType { get; set; } = "";

    /// <summary>The payload as JSON.</summary>
    public string Body { get; set; } = "";

    /// <summary>When it was checked in.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When it is deleted if nobody checked it out.</summary>
    public DateTimeOffset ExpiresAt { get; set; }
}

/// <summary>What travels on the wire instead of the payload.</summary>
/// <param name="ClaimId">The key of the stored payload.</param>
/// <param name="MessageType">.NET type name of the payload.</param>
/// <param name="Bytes">Size of the stored JSON in bytes.</param>
[MessageUrn("integration:claim-ticket")]
public sealed record ClaimTicket(Guid ClaimId, string MessageType, int Bytes);

/// <summary>Thrown when a ticket's claim is not in the store; the message goes to the error queue with this reason.</summary>
public sealed class ClaimNotFoundException(string message) : Exception(message);

/// <summary>Maps the claim table (through <see cref="PatternStoreModelBuilderExtensions.AddIntegrationPatterns"/>).</summary>
internal static class ClaimCheckModel
{
    public static void Map(ModelBuilder modelBuilder, string? schema)
    {
        modelBuilder.Entity<ClaimState>(e =>
        {
            e.ToTable(PatternStoreModelBuilderExtensions.ClaimsTable, schema);
            e.HasKey(x => x.Id).HasName("pk_integration_claims");
            e.Property(x => x.Id).HasColumnName("id");
            e.Property(x => x.MessageType).HasColumnName("message_type").HasMaxLength(1000);
            e.Property(x => x.Body).HasColumnName("body");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.ExpiresAt).HasColumnName("expires_at");
            e.HasIndex(x => x.ExpiresAt).HasDatabaseName("ix_integration_claims_expires");
        });
    }
}

/// <summary>Claim check (EIP; Camel <c>claimCheck</c>): large payloads stay in PostgreSQL, only a ticket goes on the wire.</summary>
public static class ClaimCheckExtensions
{
    /// <summary>
    /// Stores each message in PostgreSQL (committed before anything is sent) and continues with a <see cref="ClaimTicket"/>
    /// in its place. Unclaimed payloads are deleted after <paramref name="retention"/> (default 7 days).
    /// Needs <c>services.AddIntegrationPatternStore&lt;TDbContext&gt;()</c> and <c>modelBuilder.AddIntegrationPatterns()</c>.
    /// </summary>
    public static IRouteConfigurator<ClaimTicket> CheckIn<T>(this IRouteConfigurator<T> route, TimeSpan? retention = null, string? name = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.ContinueWith(new CheckInSpecification<T>(retention ?? TimeSpan.FromDays(7), name ?? "claim-check-in"));
    }

    /// <summary>
    /// Loads the payload a ticket names and continues with it. With <paramref name="remove"/> (default) the claim is
    /// deleted once the following steps have succeeded. A ticket whose claim is missing (already checked out, expired) or
    /// holds another type fails the message: it goes to the error queue with the reason. Needs the pattern store.
    /// </summary>
    public static IRouteConfigurator<T> CheckOut<T>(this IRouteConfigurator<ClaimTicket> route, bool remove = true, string? name = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.ContinueWith(new CheckOutSpecification<T>(remove, name ?? $"claim-check-out:{typeof(T).Name}"));
    }
}

/// <summary>Specification of a check-in.</summary>
internal sealed class CheckInSpecification<T>(TimeSpan retention, string name) : IRouteBridgeSpecification<T, ClaimTicket>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "CheckIn";

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (retention <= TimeSpan.Zero)
            yield return $"retention must be positive, not {retention}";
        if (string.IsNullOrWhiteSpace(name))
            yield return "the name is empty";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context, IPipe<ConsumeContext<ClaimTicket>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var store = PatternStore.Require(context, Kind);
        context.Control.AddWorker(new ClaimCleanupWorker($"Route '{context.Route}', {name} cleanup", store, context.Services, context.Metrics));
        return new CheckInFilter<T>(store, retention, context.Services, next);
    }
}

/// <summary>Stores the payload, then continues with the ticket.</summary>
internal sealed class CheckInFilter<T>(PatternStore store, TimeSpan retention, IServiceProvider services, IPipe<ConsumeContext<ClaimTicket>> downstream)
    : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var body = JsonSerializer.Serialize(context.Message, ClaimJson.Options);
        var id = NewId.NextGuid();
        var type = typeof(T).FullName ?? typeof(T).Name;
        await store.RunAsync(services, (db, tables) => db.Database.ExecuteSqlAsync(PatternSql.Of($$"""
            INSERT INTO {{tables.Claims}} (id, message_type, body, created_at, expires_at)
            VALUES ({0}, {1}, {2}, now(), now() + make_interval(secs => {3}))
            """, id, type, body, retention.TotalSeconds), context.CancellationToken)).ConfigureAwait(false);
        var ticket = new ClaimTicket(id, type, Encoding.UTF8.GetByteCount(body));
        await downstream.Send(new MessageConsumeContext<ClaimTicket>(context, ticket)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("claimCheckIn");
        scope.Add("retention", retention.ToString());
        downstream.Probe(scope);
    }
}

/// <summary>Specification of a check-out.</summary>
internal sealed class CheckOutSpecification<T>(bool remove, string name) : IRouteBridgeSpecification<ClaimTicket, T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "CheckOut";

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (string.IsNullOrWhiteSpace(name))
            yield return "the name is empty";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<ClaimTicket>> Build(RouteStepContext context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new CheckOutFilter<T>(context.Route, name, PatternStore.Require(context, Kind), remove, context.Services, next);
    }
}

/// <summary>Loads the payload, continues with it, then deletes the claim.</summary>
internal sealed class CheckOutFilter<T>(string route, string name, PatternStore store, bool remove, IServiceProvider services, IPipe<ConsumeContext<T>> downstream)
    : IFilter<ConsumeContext<ClaimTicket>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<ClaimTicket> context, IPipe<ConsumeContext<ClaimTicket>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var ticket = context.Message;
        var claim = await store.RunAsync(services, (db, _) => db.Set<ClaimState>().AsNoTracking()
            .FirstOrDefaultAsync(c => c.Id == ticket.ClaimId, context.CancellationToken)).ConfigureAwait(false)
            ?? throw new ClaimNotFoundException(
                $"Route '{route}', {name}: claim {ticket.ClaimId} ({ticket.MessageType}) is not in the claim store: already checked out, expired, or never checked in");
        var expected = typeof(T).FullName ?? typeof(T).Name;
        if (!string.Equals(claim.MessageType, expected, StringComparison.Ordinal))
            throw new ClaimNotFoundException($"Route '{route}', {name}: claim {ticket.ClaimId} holds a {claim.MessageType}, not a {expected}");
        var message = JsonSerializer.Deserialize<T>(claim.Body, ClaimJson.Options)
                      ?? throw new ClaimNotFoundException($"Route '{route}', {name}: claim {ticket.ClaimId} reads as null");
        await downstream.Send(new MessageConsumeContext<T>(context, message)).ConfigureAwait(false);
        if (remove)
        {
            await store.RunAsync(services, (db, tables) => db.Database.ExecuteSqlAsync(
                PatternSql.Of($"DELETE FROM {tables.Claims} WHERE id = {{0}}", ticket.ClaimId), context.CancellationToken)).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("claimCheckOut");
        scope.Add("type", typeof(T).Name);
        scope.Add("remove", remove);
        downstream.Probe(scope);
    }
}

internal static class ClaimJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web);
}

/// <summary>Deletes expired claims once a minute (on the housekeeping leader when <c>AddIntegrationHousekeeping</c> elects one).</summary>
sealed partial class ClaimCleanupWorker(string name, PatternStore store, IServiceProvider services, PatternMetrics metrics) : IRouteWorker
{
    public string Name => name;

    public async Task RunAsync(IBus bus, CancellationToken stopping)
    {
        var logger = services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.ClaimCheck") ?? NullLogger.Instance;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                // Every host reports the backlog; the delete runs on the housekeeping leader only, when one is elected.
                var delete = services.HousekeepingMayRun("claim-check-cleanup");
                var unclaimed = await store.RunAsync(services, async (db, tables) =>
                {
                    if (delete)
                        await db.Database.ExecuteSqlAsync(PatternSql.Of($"DELETE FROM {tables.Claims} WHERE expires_at < now()"), stopping).ConfigureAwait(false);
                    return await db.Set<ClaimState>().LongCountAsync(stopping).ConfigureAwait(false);
                }).ConfigureAwait(false);
                metrics.ReportBacklog("claims", unclaimed);
            }
            catch (Exception exception) when (!stopping.IsCancellationRequested)
            {
                LogFailed(logger, exception, name);
            }

            await Task.Delay(TimeSpan.FromMinutes(1), stopping).ConfigureAwait(false);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Worker}: deleting expired claims failed; retrying in a minute")]
    static partial void LogFailed(ILogger logger, Exception exception, string worker);
}
