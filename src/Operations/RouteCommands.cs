using Integration.Patterns.Routing;

namespace Integration.Operations;

/// <summary><c>route.switch</c> (Operator): turn a route's detour or wire tap on or off.</summary>
/// <param name="Target">The route.</param>
/// <param name="Name">The switch, e.g. <c>detour:inspect</c>.</param>
/// <param name="Enabled">On or off.</param>
public sealed record SetRouteSwitch(string Target, string Name, bool Enabled);

/// <summary><c>route.table</c> (Operator): replace a keyed router's table at run time.</summary>
/// <param name="Target">The route.</param>
/// <param name="Keys">Key → destination queue.</param>
/// <param name="Otherwise">Destination for other keys.</param>
/// <param name="Router">The router step's name.</param>
public sealed record ReplaceRoutingTable(string Target, IReadOnlyDictionary<string, string>? Keys = null, string? Otherwise = null, string Router = "router");

/// <summary><c>route.rate-limit</c> (Operator): at most <paramref name="Messages"/> per <paramref name="IntervalSeconds"/> through a throttled route.</summary>
/// <param name="Target">The route.</param>
/// <param name="Messages">Messages per interval.</param>
/// <param name="IntervalSeconds">The interval, 1 s by default, at most 3600.</param>
public sealed record SetRateLimit(string Target, int Messages, double IntervalSeconds = 1);

/// <summary>The integration routes through <see cref="RouteControl"/>.</summary>
sealed class RouteCommands(IServiceProvider services) :
    IControlHandler<SetRouteSwitch>, IControlHandler<ReplaceRoutingTable>, IControlHandler<SetRateLimit>
{
    RouteControl? Control => services.GetService(typeof(RouteControl)) as RouteControl;

    /// <summary>Describes every route: steps, switches, routing tables, rate limit.</summary>
    public static object Describe(RouteControl control) =>
        control.Routes.Select(route => new
        {
            route = route.Name,
            messageType = route.MessageType,
            steps = route.Steps,
            switches = control.Switches.Where(s => s.Route == route.Name).Select(s => new { s.Name, s.Kind, s.Enabled }),
            routingTables = control.RoutingTables.Where(t => t.Route == route.Name).Select(t => new { t.Name, table = t.Describe() }),
            rateLimit = control.RateLimits.Where(r => r.Route == route.Name).Select(r => new { r.Messages, intervalSeconds = r.Interval.TotalSeconds, r.PerSecond })
                .FirstOrDefault(),
        });

    public Task<ControlResult> HandleAsync(SetRouteSwitch command, CancellationToken cancellationToken)
    {
        if (Control is not { } control)
            return NoRoutes();
        return Task.FromResult(control.SetSwitch(command.Target, command.Name, command.Enabled)
            ? ControlResult.Ok($"Route '{command.Target}': {command.Name} is now {(command.Enabled ? "on" : "off")}")
            : ControlResult.NotFound($"Route '{command.Target}' has no switch '{command.Name}'; switches: {string.Join(", ", control.Switches.Select(s => $"{s.Route}/{s.Name}"))}"));
    }

    public Task<ControlResult> HandleAsync(ReplaceRoutingTable command, CancellationToken cancellationToken)
    {
        if (Control is not { } control)
            return NoRoutes();
        if (control.FindRoutingTable(command.Target, command.Router) is not { } table)
            return Task.FromResult(ControlResult.NotFound($"Route '{command.Target}' has no router '{command.Router}'"));
        var failures = table.ReplaceKeyed(command.Keys ?? new Dictionary<string, string>(), command.Otherwise);
        return Task.FromResult(failures.Count == 0
            ? ControlResult.Ok($"Route '{command.Target}': router '{command.Router}' replaced", table.Describe())
            : ControlResult.Invalid($"Routing table not replaced: {string.Join("; ", failures)}"));
    }

    public Task<ControlResult> HandleAsync(SetRateLimit command, CancellationToken cancellationToken)
    {
        if (Control is not { } control)
            return NoRoutes();
        if (command.IntervalSeconds > 3600)
            return Task.FromResult(ControlResult.Invalid("route.rate-limit: argument 'intervalSeconds' must be at most 3600"));
        var failures = control.SetRateLimit(command.Target, command.Messages, TimeSpan.FromSeconds(command.IntervalSeconds));
        if (control.RateLimits.All(r => r.Route != command.Target))
            return Task.FromResult(ControlResult.NotFound(failures.FirstOrDefault() ?? $"Route '{command.Target}' has no rate limit"));
        return Task.FromResult(failures.Count == 0
            ? ControlResult.Ok($"Route '{command.Target}': at most {command.Messages} message(s) per {command.IntervalSeconds} s")
            : ControlResult.Invalid($"Rate limit not changed: {string.Join("; ", failures)}"));
    }

    static Task<ControlResult> NoRoutes() => Task.FromResult(ControlResult.NotFound("This host declares no integration routes"));
}
