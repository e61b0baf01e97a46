using System.Collections.Concurrent;

namespace Integration.Patterns.Routing;

/// <summary>An on/off switch of a running route (a detour, a wire tap), flipped by the control bus.</summary>
public sealed class RouteSwitch
{
    volatile bool _enabled;

    internal RouteSwitch(string route, string name, string kind, bool enabled)
    {
        Route = route;
        Name = name;
        Kind = kind;
        _enabled = enabled;
    }

    /// <summary>Route it belongs to.</summary>
    public string Route { get; }

    /// <summary>Switch name within the route.</summary>
    public string Name { get; }

    /// <summary><c>Detour</c> or <c>WireTap</c>.</summary>
    public string Kind { get; }

    /// <summary>Current state; changed through <see cref="RouteControl.SetSwitch"/>.</summary>
    public bool Enabled
    {
        get => _enabled;
        internal set => _enabled = value;
    }
}

/// <summary>A routing table that can be replaced while the route runs, as a whole, atomically.</summary>
public interface IReplaceableRoutingTable
{
    /// <summary>Route it belongs to.</summary>
    string Route { get; }

    /// <summary>Router name within the route.</summary>
    string Name { get; }

    /// <summary>The table in force, for listing.</summary>
    object Describe();

    /// <summary>
    /// Replaces a keyed table (key → destination, plus the otherwise destination), as the control bus sends it.
    /// Validated first; on any mistake nothing changes and the failures are returned.
    /// </summary>
    IReadOnlyList<string> ReplaceKeyed(IReadOnlyDictionary<string, string> keys, string? otherwise);
}

/// <summary>
/// The runtime side of all routes: switches and routing tables by route and name, and each route's description.
/// Filters stay immutable; what an operator may change at run time lives here, explicitly.
/// </summary>
public sealed class RouteControl
{
    readonly ConcurrentDictionary<(string Route, string Name), RouteSwitch> _switches = new();
    readonly ConcurrentDictionary<(string Route, string Name), IReplaceableRoutingTable> _tables = new();
    readonly ConcurrentDictionary<string, RouteDescription> _routes = new(StringComparer.Ordinal);
    readonly ConcurrentQueue<IRouteWorker> _workers = new();
    readonly ConcurrentDictionary<string, Throttling.RouteRateLimit> _rateLimits = new(StringComparer.Ordinal);

    /// <summary>Every route's rate limit (routes declared with <c>RateLimit(...)</c>).</summary>
    public IReadOnlyList<Throttling.RouteRateLimit> RateLimits => _rateLimits.Values.OrderBy(r => r.Route, StringComparer.Ordinal).ToList();

    /// <summary>
    /// Changes a route's rate limit while it runs. Returns the mistakes (nothing changes then); a route without a rate
    /// limit answers with its name in the failure.
    /// </summary>
    public IReadOnlyList<string> SetRateLimit(string route, int messages, TimeSpan interval)
    {
        if (!_rateLimits.TryGetValue(route, out var limit))
            return [$"Route '{route}' has no rate limit; routes with one: {string.Join(", ", _rateLimits.Keys.Order(StringComparer.Ordinal))}"];
        var failures = Throttling.RouteRateLimit.Validate(messages, interval).ToList();
        if (failures.Count == 0)
            limit.Set(messages, interval);
        return failures;
    }

    internal Throttling.RouteRateLimit AddRateLimit(string route, int messages, TimeSpan interval) =>
        _rateLimits.GetOrAdd(route, _ => new Throttling.RouteRateLimit(route, messages, interval));

    /// <summary>Every route that has been built, by name.</summary>
    public IReadOnlyList<RouteDescription> Routes => _routes.Values.OrderBy(r => r.Name, StringComparer.Ordinal).ToList();

    /// <summary>Every switch.</summary>
    public IReadOnlyList<RouteSwitch> Switches => _switches.Values.OrderBy(s => s.Route, StringComparer.Ordinal).ThenBy(s => s.Name, StringComparer.Ordinal).ToList();

    /// <summary>Every replaceable routing table.</summary>
    public IReadOnlyList<IReplaceableRoutingTable> RoutingTables => _tables.Values.ToList();

    /// <summary>Turns a detour or wire tap on or off. False when the route has no such switch.</summary>
    public bool SetSwitch(string route, string name, bool enabled)
    {
        if (!_switches.TryGetValue((route, name), out var routeSwitch))
            return false;
        routeSwitch.Enabled = enabled;
        return true;
    }

    /// <summary>A routing table by route and router name.</summary>
    public IReplaceableRoutingTable? FindRoutingTable(string route, string name) => _tables.TryGetValue((route, name), out var table) ? table : null;

    internal RouteSwitch AddSwitch(string route, string name, string kind, bool enabled) =>
        _switches.GetOrAdd((route, name), _ => new RouteSwitch(route, name, kind, enabled));

    internal void AddRoutingTable(IReplaceableRoutingTable table) => _tables[(table.Route, table.Name)] = table;

    /// <summary>Registers background work of a step (started with the bus, stopped before it); call from <c>Build</c>.</summary>
    internal void AddWorker(IRouteWorker worker)
    {
        ArgumentNullException.ThrowIfNull(worker);
        _workers.Enqueue(worker);
    }

    internal IReadOnlyList<IRouteWorker> Workers => _workers.ToList();

    internal void AddRoute(RouteDescription description) => _routes[description.Name] = description;

    /// <summary>Set by <c>ConfigureIntegrationRoutes</c>; a bus whose routes were declared but not configured does not start.</summary>
    internal bool IsConfigured { get; set; }
}

/// <summary>A route as configured: for listing on the control bus and drawing on the dashboard.</summary>
/// <param name="Name">Route name (its queue).</param>
/// <param name="MessageType">What it consumes.</param>
/// <param name="Steps">Its steps in order, translations included.</param>
public sealed record RouteDescription(string Name, string MessageType, IReadOnlyList<RouteStepDescription> Steps);

/// <summary>One step of a <see cref="RouteDescription"/>.</summary>
/// <param name="Index">1-based position.</param>
/// <param name="Kind">Pattern.</param>
/// <param name="Name">Name in the message history.</param>
/// <param name="MessageType">The message type at this step.</param>
public sealed record RouteStepDescription(int Index, string Kind, string Name, string MessageType);
