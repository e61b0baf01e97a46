namespace Integration.Host.Operations;

/// <summary>The control bus over HTTP, under <c>/api/control</c>.</summary>
public static class ControlBusEndpoints
{
    /// <summary>Body of <c>PUT /api/control/log-level</c>.</summary>
    public sealed record LogLevelRequest(string? Category, string? Level);

    /// <summary>Maps the control API.</summary>
    public static IEndpointRouteBuilder MapControlBus(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var control = endpoints.MapGroup("/api/control");

        control.MapGet("/actions", (HttpContext http, ControlBus bus, ControlAuthorization auth) =>
            auth.Authenticate(ControlAuthorization.KeyOf(http.Request)) is null
                ? Results.Problem("A control bus key is required", statusCode: StatusCodes.Status401Unauthorized)
                : Results.Ok(bus.Actions.Select(a => new { action = a.Action, role = a.Role.ToString() })));
        control.MapGet("/routes", (HttpContext http, ControlBus bus, ControlAuthorization auth) => Run(http, bus, auth, new ControlCommand("routes.list")));
        control.MapGet("/endpoints", (HttpContext http, ControlBus bus, ControlAuthorization auth) => Run(http, bus, auth, new ControlCommand("endpoints.list")));
        control.MapPost("/endpoints/{name}/pause", (HttpContext http, ControlBus bus, ControlAuthorization auth, string name) => Run(http, bus, auth, new ControlCommand("endpoint.pause", name)));
        control.MapPost("/endpoints/{name}/resume", (HttpContext http, ControlBus bus, ControlAuthorization auth, string name) => Run(http, bus, auth, new ControlCommand("endpoint.resume", name)));
        control.MapPut("/log-level", (HttpContext http, ControlBus bus, ControlAuthorization auth, LogLevelRequest request) =>
            Run(http, bus, auth, new ControlCommand("log-level.set", request.Category, new Dictionary<string, string> { ["level"] = request.Level ?? "" })));
        control.MapGet("/audit", (HttpContext http, ControlBus bus, ControlAuthorization auth, int? take) =>
            Run(http, bus, auth, new ControlCommand("audit.list", Arguments: new Dictionary<string, string> { ["take"] = (take ?? 50).ToString(System.Globalization.CultureInfo.InvariantCulture) })));
        control.MapDeadLetters();
        control.MapRouteCommands();
        control.MapMessageStore();
        endpoints.MapDashboard(control);
        control.MapPost("/commands", (HttpContext http, ControlBus bus, ControlAuthorization auth, ControlCommand command) => Run(http, bus, auth, command));
        return endpoints;
    }

    /// <summary>Authorizes, runs and audits <paramref name="command"/>, and maps its outcome to an HTTP result.</summary>
    public static async Task<IResult> Run(HttpContext http, ControlBus bus, ControlAuthorization auth, ControlCommand command)
    {
        var caller = auth.Authenticate(ControlAuthorization.KeyOf(http.Request));
        var result = await bus.ExecuteAsync(caller, "http", command, http.RequestAborted).ConfigureAwait(false);
        return result.Outcome switch
        {
            ControlOutcome.Ok => Results.Ok(new { outcome = "ok", message = result.Message, data = result.Data }),
            ControlOutcome.Unauthorized => Results.Problem(result.Message, statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized"),
            ControlOutcome.Denied => Results.Problem(result.Message, statusCode: StatusCodes.Status403Forbidden, title: "Forbidden"),
            ControlOutcome.NotFound => Results.Problem(result.Message, statusCode: StatusCodes.Status404NotFound, title: "Not found"),
            ControlOutcome.Invalid => Results.Problem(result.Message, statusCode: StatusCodes.Status400BadRequest, title: "Invalid command"),
            _ => Results.Problem(result.Message, statusCode: StatusCodes.Status500InternalServerError, title: "Control command failed"),
        };
    }
}
