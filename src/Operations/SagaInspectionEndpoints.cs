using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Operations;

/// <summary>Saga inspection, repair and the graph under <c>/api/control</c>.</summary>
static class SagaInspectionEndpoints
{
    public static void MapSagaInspectionEndpoints(this RouteGroupBuilder control)
    {
        control.MapGet("/sagas", (HttpContext http, ControlBus bus, string? saga, string? state, double? olderThanMinutes, bool? stuck, int? take) =>
            Run(http, bus, new ListSagaInstances(saga, state, olderThanMinutes, stuck ?? false, take ?? 50), flatten: false));
        control.MapGet("/sagas/{saga}", (HttpContext http, ControlBus bus, string saga, string? state, double? olderThanMinutes, bool? stuck, int? take) =>
            Run(http, bus, new ListSagaInstances(saga, state, olderThanMinutes, stuck ?? false, take ?? 50), flatten: false));
        control.MapGet("/sagas/{saga}/{correlationId}", (HttpContext http, ControlBus bus, string saga, string correlationId) =>
            Run(http, bus, new ShowSagaInstance(saga, correlationId), flatten: true));
        control.MapPost("/sagas/{saga}/{correlationId}/timeouts/fire", (HttpContext http, ControlBus bus, string saga, string correlationId, string? tokenId) =>
            Run(http, bus, new FireSagaTimeout(saga, correlationId, tokenId), flatten: false));
        control.MapPost("/sagas/{saga}/{correlationId}/timeouts/cancel", (HttpContext http, ControlBus bus, string saga, string correlationId, string? tokenId) =>
            Run(http, bus, new CancelSagaTimeout(saga, correlationId, tokenId), flatten: false));
        control.MapPost("/sagas/{saga}/{correlationId}/finalize", (HttpContext http, ControlBus bus, string saga, string correlationId, string? reason) =>
            Run(http, bus, new FinalizeSaga(saga, correlationId, reason), flatten: false));
        control.MapGet("/graph", (HttpContext http, ControlBus bus) => Run(http, bus, new ShowGraph(), flatten: true));
    }

    /// <summary>
    /// Runs the command as every control route does (<c>{outcome, message, data}</c>); <paramref name="flatten"/> also puts
    /// the data's fields at the top level (the instance's <c>state</c> and <c>timeline</c>, the graph's <c>nodes</c> and <c>links</c>).
    /// </summary>
    static async Task<IResult> Run<TCommand>(HttpContext http, ControlBus bus, TCommand command, bool flatten)
        where TCommand : class
    {
        var caller = await ControlEndpoints.CallerAsync(http).ConfigureAwait(false);
        var result = await bus.ExecuteAsync(caller, "http", command, http.RequestAborted).ConfigureAwait(false);
        if (result.Outcome != ControlOutcome.Ok)
            return ControlEndpoints.Problem(result);
        var body = new JsonObject { ["outcome"] = "ok", ["message"] = result.Message };
        var data = JsonSerializer.SerializeToNode(result.Data, SagaInspection.Json);
        if (flatten && data is JsonObject fields)
        {
            foreach (var (name, value) in fields)
                body[name] = value?.DeepClone();
        }

        body["data"] = data;
        return Results.Text(body.ToJsonString(SagaInspection.Json), "application/json; charset=utf-8");
    }
}
