using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Operations;

/// <summary>The control bus over HTTP, under <c>/api/control</c>: each route builds its typed command and runs it through <see cref="ControlBus"/>.</summary>
static class ControlEndpoints
{
    /// <summary>Body of <c>PUT /api/control/log-level</c>.</summary>
    internal sealed record LogLevelRequest(string? Category, string? Level);

    /// <summary>Body of <c>PUT /api/control/routes/{route}/switches/{name}</c>.</summary>
    internal sealed record SwitchRequest(bool Enabled);

    /// <summary>Body of <c>PUT /api/control/routes/{route}/tables/{router}</c>.</summary>
    internal sealed record RoutingTableRequest(Dictionary<string, string>? Keys, string? Otherwise);

    /// <summary>Body of <c>PUT /api/control/routes/{route}/rate-limit</c>.</summary>
    internal sealed record RateLimitRequest(int Messages, double? IntervalSeconds);

    /// <summary>Body of <c>POST /api/control/messages/replay</c>.</summary>
    internal sealed record ReplayRequest(List<long>? Ids, string? CorrelationId, string? MessageType, DateTimeOffset? From, DateTimeOffset? To, string? Exchange,
        string? Destination, int? Take);

    public static void MapControlEndpoints(this IEndpointRouteBuilder endpoints, string prefix)
    {
        var control = endpoints.MapGroup(prefix);
        control.MapGet("/actions", async (HttpContext http, ControlBus bus) =>
            await CallerAsync(http).ConfigureAwait(false) switch
            {
                null => Results.Problem("A control bus key or bearer token is required", statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized"),
                { Refusal: { } refusal } caller => Problem(new ControlResult(caller.RefusalOutcome, refusal)),
                _ => Results.Ok(bus.Actions.Select(a => new { action = a.Name, role = a.Role.ToString() })),
            });
        control.MapPost("/commands", (HttpContext http, ControlBus bus, ControlCommand command) => Execute(http, bus, command));

        control.MapGet("/routes", (HttpContext http, ControlBus bus) => Run(http, bus, new ListRoutes()));
        control.MapGet("/endpoints", (HttpContext http, ControlBus bus) => Run(http, bus, new ListEndpoints()));
        control.MapPost("/endpoints/{name}/pause", (HttpContext http, ControlBus bus, string name) => Run(http, bus, new PauseEndpoint(name)));
        control.MapPost("/endpoints/{name}/resume", (HttpContext http, ControlBus bus, string name) => Run(http, bus, new ResumeEndpoint(name)));
        control.MapPut("/log-level", (HttpContext http, ControlBus bus, LogLevelRequest request) =>
            Execute(http, bus, new ControlCommand("log-level.set", request.Category, new Dictionary<string, string> { ["level"] = request.Level ?? "" })));
        control.MapGet("/audit", (HttpContext http, ControlBus bus, int? take) => Run(http, bus, new ListAudit(take ?? 50)));

        control.MapGet("/dead-letters", (HttpContext http, ControlBus bus) => Run(http, bus, new ListDeadLetters()));
        control.MapGet("/dead-letters/{queue}", (HttpContext http, ControlBus bus, string queue, int? take) => Run(http, bus, new ListDeadLetters(queue, take ?? 50)));
        control.MapPost("/dead-letters/{queue}/replay", (HttpContext http, ControlBus bus, string queue, string? messageId) => Run(http, bus, new ReplayDeadLetters(queue, messageId)));
        control.MapDelete("/dead-letters/{queue}", (HttpContext http, ControlBus bus, string queue, string? confirm, string? messageId) =>
            Run(http, bus, new DeleteDeadLetters(queue, confirm, messageId)));

        control.MapPut("/routes/{route}/switches/{name}", (HttpContext http, ControlBus bus, string route, string name, SwitchRequest body) =>
            Run(http, bus, new SetRouteSwitch(route, name, body.Enabled)));
        control.MapPut("/routes/{route}/tables/{router}", (HttpContext http, ControlBus bus, string route, string router, RoutingTableRequest body) =>
            Run(http, bus, new ReplaceRoutingTable(route, body.Keys ?? [], body.Otherwise, router)));
        control.MapPut("/routes/{route}/rate-limit", (HttpContext http, ControlBus bus, string route, RateLimitRequest body) =>
            Run(http, bus, new SetRateLimit(route, body.Messages, body.IntervalSeconds ?? 1)));

        control.MapGet("/messages", (HttpContext http, ControlBus bus, string? correlationId, string? type, DateTimeOffset? from, DateTimeOffset? to, string? exchange, int? take) =>
            Run(http, bus, new ListMessages(correlationId, type, from, to, exchange, take ?? 50)));
        control.MapPost("/messages/replay", (HttpContext http, ControlBus bus, ReplayRequest body) =>
            Run(http, bus, new ReplayMessages(body.Destination, body.Ids, body.CorrelationId, body.MessageType, body.From, body.To, body.Exchange,
                body.Take ?? body.Ids?.Count ?? 50)));

        control.MapGet("/overview", (HttpContext http, ControlBus bus, int? take) => Run(http, bus, new ShowOverview(take ?? 40)));
        control.MapGet("/proxies", (HttpContext http, ControlBus bus) => Run(http, bus, new ListProxies()));
        control.MapPost("/proxies/{name}/reset", (HttpContext http, ControlBus bus, string name) => Run(http, bus, new ResetProxy(name)));
        control.MapGet("/permissions", (HttpContext http, ControlBus bus) => Run(http, bus, new ShowPermissions()));
        control.MapGet("/environment", (HttpContext http, ControlBus bus) => Run(http, bus, new ShowEnvironment()));
        control.MapFailureEndpoints();
        control.MapSagaInspectionEndpoints();
    }

    /// <summary>The caller of an HTTP control request (API key or bearer token), or null without credentials.</summary>
    internal static Task<ControlCaller?> CallerAsync(HttpContext http) =>
        http.RequestServices.GetRequiredService<ControlAuthorization>().AuthenticateAsync(ControlAuthorization.KeyOf(http.Request), http.RequestAborted);

    static async Task<IResult> Run<TCommand>(HttpContext http, ControlBus bus, TCommand command)
        where TCommand : class =>
        await RunAsync(bus.ExecuteAsync(await CallerAsync(http).ConfigureAwait(false), "http", command, http.RequestAborted)).ConfigureAwait(false);

    static async Task<IResult> Execute(HttpContext http, ControlBus bus, ControlCommand command) =>
        await RunAsync(bus.ExecuteAsync(await CallerAsync(http).ConfigureAwait(false), "http", command, http.RequestAborted)).ConfigureAwait(false);

    internal static async Task<IResult> RunAsync(Task<ControlResult> run)
    {
        var result = await run.ConfigureAwait(false);
        return result.Outcome == ControlOutcome.Ok ? Results.Ok(new { outcome = "ok", message = result.Message, data = result.Data }) : Problem(result);
    }

    /// <summary>A refused or failed control command as a problem response.</summary>
    internal static IResult Problem(ControlResult result) =>
        result.Outcome switch
        {
            ControlOutcome.Unauthorized => Results.Problem(result.Message, statusCode: StatusCodes.Status401Unauthorized, title: "Unauthorized"),
            ControlOutcome.Denied => Results.Problem(result.Message, statusCode: StatusCodes.Status403Forbidden, title: "Forbidden"),
            ControlOutcome.NotFound => Results.Problem(result.Message, statusCode: StatusCodes.Status404NotFound, title: "Not found"),
            ControlOutcome.Invalid => Results.Problem(result.Message, statusCode: StatusCodes.Status400BadRequest, title: "Invalid command"),
            _ => Results.Problem(result.Message, statusCode: StatusCodes.Status500InternalServerError, title: "Control command failed"),
        };
}
