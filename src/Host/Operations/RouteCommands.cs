using System.Text.Json;
using Integration.Patterns.Routing;

namespace Integration.Host.Operations;

/// <summary>Control commands over the integration routes: describe them, flip detours and wire taps, replace keyed routing tables.</summary>
public static class RouteCommands
{
    /// <summary>Describes every route: steps, switches, routing tables.</summary>
    public static object Describe(RouteControl control)
    {
        ArgumentNullException.ThrowIfNull(control);
        return control.Routes.Select(route => new
        {
            route = route.Name,
            messageType = route.MessageType,
            steps = route.Steps,
            switches = control.Switches.Where(s => s.Route == route.Name).Select(s => new { s.Name, s.Kind, s.Enabled }),
            routingTables = control.RoutingTables.Where(t => t.Route == route.Name).Select(t => new { t.Name, table = t.Describe() }),
            rateLimit = control.RateLimits.Where(r => r.Route == route.Name).Select(r => new { r.Messages, intervalSeconds = r.Interval.TotalSeconds, r.PerSecond })
                .FirstOrDefault(),
        });
    }

    /// <summary>Registers the route commands.</summary>
    public static IServiceCollection AddRouteCommands(this IServiceCollection services)
    {
        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("route.switch", ControlRole.Operator, (command, _) =>
        {
            var control = sp.GetService<RouteControl>();
            var name = command.Argument("name");
            if (control is null || string.IsNullOrWhiteSpace(command.Target) || name is null || !bool.TryParse(command.Argument("enabled"), out var enabled))
                return Task.FromResult(new ControlResult(ControlOutcome.Invalid, "route.switch needs the route as target and arguments 'name' (e.g. detour:inspect) and 'enabled' (true/false)"));
            return Task.FromResult(control.SetSwitch(command.Target, name, enabled)
                ? ControlResult.Ok($"Route '{command.Target}': {name} is now {(enabled ? "on" : "off")}")
                : new ControlResult(ControlOutcome.NotFound, $"Route '{command.Target}' has no switch '{name}'; switches: {string.Join(", ", control.Switches.Select(s => $"{s.Route}/{s.Name}"))}"));
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("route.table", ControlRole.Operator, (command, _) =>
        {
            var control = sp.GetService<RouteControl>();
            var router = command.Argument("router") ?? "router";
            if (control is null || string.IsNullOrWhiteSpace(command.Target))
                return Task.FromResult(new ControlResult(ControlOutcome.Invalid, "route.table needs the route as target"));
            if (control.FindRoutingTable(command.Target, router) is not { } table)
                return Task.FromResult(new ControlResult(ControlOutcome.NotFound, $"Route '{command.Target}' has no router '{router}'"));
            Dictionary<string, string> keys;
            try
            {
                keys = JsonSerializer.Deserialize<Dictionary<string, string>>(command.Argument("keys") ?? "{}") ?? [];
            }
            catch (JsonException exception)
            {
                return Task.FromResult(new ControlResult(ControlOutcome.Invalid, $"Argument 'keys' must be a JSON object of key → queue: {exception.Message}"));
            }

            var failures = table.ReplaceKeyed(keys, command.Argument("otherwise"));
            return Task.FromResult(failures.Count == 0
                ? ControlResult.Ok($"Route '{command.Target}': router '{router}' replaced", table.Describe())
                : new ControlResult(ControlOutcome.Invalid, $"Routing table not replaced: {string.Join("; ", failures)}"));
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("route.rate-limit", ControlRole.Operator, (command, _) =>
        {
            var control = sp.GetService<RouteControl>();
            var interval = command.Argument("intervalSeconds") ?? "1";
            if (control is null || string.IsNullOrWhiteSpace(command.Target)
                || !int.TryParse(command.Argument("messages"), System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var messages)
                || !double.TryParse(interval, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var seconds)
                || !double.IsFinite(seconds) || seconds > 3600)
            {
                return Task.FromResult(new ControlResult(ControlOutcome.Invalid,
                    "route.rate-limit needs the route as target and arguments 'messages' (a whole number) and 'intervalSeconds' (default 1, at most 3600)"));
            }

            if (control.RateLimits.All(r => r.Route != command.Target))
                return Task.FromResult(new ControlResult(ControlOutcome.NotFound, control.SetRateLimit(command.Target, messages, TimeSpan.FromSeconds(seconds))[0]));
            var failures = control.SetRateLimit(command.Target, messages, TimeSpan.FromSeconds(seconds));
            return Task.FromResult(failures.Count == 0
                ? ControlResult.Ok($"Route '{command.Target}': at most {messages} message(s) per {seconds} s")
                : new ControlResult(ControlOutcome.Invalid, $"Rate limit not changed: {string.Join("; ", failures)}"));
        }));

        return services;
    }

    /// <summary>Body of <c>PUT /api/control/routes/{route}/rate-limit</c>: <paramref name="Messages"/> per <paramref name="IntervalSeconds"/> (default 1).</summary>
    public sealed record RateLimitRequest(int Messages, double? IntervalSeconds);

    /// <summary>Body of <c>PUT /api/control/routes/{route}/tables/{router}</c>.</summary>
    public sealed record RoutingTableRequest(Dictionary<string, string>? Keys, string? Otherwise);

    /// <summary>Body of <c>PUT /api/control/routes/{route}/switches/{name}</c>.</summary>
    public sealed record SwitchRequest(bool Enabled);

    /// <summary>Maps the route commands under <c>/api/control/routes</c>.</summary>
    public static RouteGroupBuilder MapRouteCommands(this RouteGroupBuilder control)
    {
        ArgumentNullException.ThrowIfNull(control);
        control.MapPut("/routes/{route}/switches/{name}", (HttpContext http, ControlBus bus, ControlAuthorization auth, string route, string name, SwitchRequest body) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("route.switch", route,
                new Dictionary<string, string> { ["name"] = name, ["enabled"] = body.Enabled ? "true" : "false" })));
        control.MapPut("/routes/{route}/tables/{router}", (HttpContext http, ControlBus bus, ControlAuthorization auth, string route, string router, RoutingTableRequest body) =>
        {
            var arguments = new Dictionary<string, string> { ["router"] = router, ["keys"] = JsonSerializer.Serialize(body.Keys ?? []) };
            if (body.Otherwise is not null)
                arguments["otherwise"] = body.Otherwise;
            return ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("route.table", route, arguments));
        });
        control.MapPut("/routes/{route}/rate-limit", (HttpContext http, ControlBus bus, ControlAuthorization auth, string route, RateLimitRequest body) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("route.rate-limit", route, new Dictionary<string, string>
            {
                ["messages"] = body.Messages.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["intervalSeconds"] = (body.IntervalSeconds ?? 1).ToString(System.Globalization.CultureInfo.InvariantCulture),
            })));
        return control;
    }
}
