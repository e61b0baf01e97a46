using Integration.Hosting;
using Integration.Patterns.SmartProxy;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integration.Operations;

/// <summary><c>overview</c> (Viewer): queues with rates, dead letters, outbox backlog, saga instances by state, probes, smart proxies, recent journeys.</summary>
/// <param name="Take">How many stored messages the journeys are made of.</param>
public sealed record ShowOverview(int Take = 40);

/// <summary><c>proxies.list</c> (Viewer): smart proxies with their circuit state and pending requests.</summary>
public sealed record ListProxies;

/// <summary><c>proxy.reset</c> (Operator): close a smart proxy's circuit.</summary>
/// <param name="Target">The proxy's name.</param>
public sealed record ResetProxy(string Target);

/// <summary>What the dashboard reads, and the smart proxies.</summary>
sealed class DashboardCommands(OperationsOverview overview, MessageStore store, ProbeMonitor probes, IServiceProvider services) :
    IControlHandler<ShowOverview>, IControlHandler<ListProxies>, IControlHandler<ResetProxy>
{
    public async Task<ControlResult> HandleAsync(ShowOverview command, CancellationToken cancellationToken)
    {
        var snapshot = await overview.MeasureAsync(cancellationToken).ConfigureAwait(false);
        var recent = await store.FindAsync(new MessageQuery(null, null, null, null, null, command.Take), cancellationToken).ConfigureAwait(false);
        // The node the bus is connected to (with Integration:RabbitMq:ClusterNodes it moves when that node dies).
        var node = services.GetService(typeof(BrokerNode)) is BrokerNode broker ? await broker.ConnectedAsync(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false) : null;
        return ControlResult.Ok("Queues with rates, dead letters, outbox backlog, saga instances by state, probes, smart proxies and recent journeys", new
        {
            at = snapshot.At,
            brokerNode = node,
            // Which host runs the cleanups (AddIntegrationHousekeeping); null when no election is registered.
            housekeeping = services.GetService(typeof(Integration.Outbox.Leases.IHousekeepingLeader)) is Integration.Outbox.Leases.IHousekeepingLeader leader
                ? new { leader = leader.Leader, instance = leader.Instance, isLeader = leader.IsLeader }
                : null,
            queues = snapshot.Queues,
            deadLetters = snapshot.DeadLetters,
            outboxBacklog = snapshot.OutboxBacklog,
            sagas = snapshot.Sagas,
            storedMessages = snapshot.StoredMessages,
            probes = probes.Results,
            proxies = Proxies(),
            journeys = MessageJourneys.Group(recent),
            errors = snapshot.Errors,
        });
    }

    public Task<ControlResult> HandleAsync(ListProxies command, CancellationToken cancellationToken) =>
        Task.FromResult(ControlResult.Ok("Smart proxies with their circuit state and pending requests", Proxies()));

    public Task<ControlResult> HandleAsync(ResetProxy command, CancellationToken cancellationToken)
    {
        var proxy = Registry?.Find(command.Target);
        if (proxy is null)
            return Task.FromResult(ControlResult.NotFound($"No smart proxy '{command.Target}'"));
        proxy.Reset();
        return Task.FromResult(ControlResult.Ok($"Smart proxy '{proxy.Name}': circuit closed"));
    }

    SmartProxyRegistry? Registry => services.GetService(typeof(SmartProxyRegistry)) as SmartProxyRegistry;

    object Proxies() => (Registry?.All ?? []).Select(p => new { name = p.Name, destination = p.Destination.ToString(), circuit = p.State.ToString(), pending = p.Pending }).ToList();
}

/// <summary>
/// The operations dashboard at <c>/dashboard</c>: one self-contained page (inline script and style, nothing from the
/// network) that reads the control bus with the key the operator types in.
/// </summary>
static class Dashboard
{
    static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(Dashboard).Assembly.GetManifestResourceStream("Integration.Operations.dashboard.html")
            ?? throw new InvalidOperationException("The dashboard page is not embedded in the operations assembly");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    public static void MapDashboard(this IEndpointRouteBuilder endpoints, string path) =>
        endpoints.MapGet(path, (HttpContext http) =>
        {
            // The page holds no data; everything it shows comes from the control bus, with the operator's key.
            http.Response.Headers.ContentSecurityPolicy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:";
            http.Response.Headers.CacheControl = "no-store";
            return Results.Bytes(Page.Value, "text/html; charset=utf-8");
        }).ExcludeFromDescription();
}
