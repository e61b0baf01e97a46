using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integration.Operations;

/// <summary>
/// Failed messages over HTTP, under <c>/api/control/failures</c>. Unlike the other control routes these answer with the
/// data itself (a JSON array of groups; <c>{"moved":N}</c> with 202 for a retry), through the same authorization and audit.
/// </summary>
static class FailureEndpoints
{
    /// <summary>Body of <c>POST /api/control/failures/retry</c>.</summary>
    internal sealed record FailureRetryRequest(string? Queue, string? MessageType, DateTimeOffset? From, DateTimeOffset? To, string? CorrelationId,
        string? Reason, int? Max);

    /// <summary>Body of <c>POST /api/control/failures/{queue}/messages/{messageId}/retry</c>: a new body and headers (a null value removes one).</summary>
    internal sealed record FailureEditRequest(string? Body, Dictionary<string, string?>? Headers);

    public static void MapFailureEndpoints(this IEndpointRouteBuilder control)
    {
        control.MapGet("/failures", (HttpContext http, ControlBus bus, string? queue) => Data(http, bus, new ListFailures(queue), StatusCodes.Status200OK));
        control.MapGet("/failures/{id}", (HttpContext http, ControlBus bus, string id, int? take) => Data(http, bus, new ShowFailures(id, take ?? 50), StatusCodes.Status200OK));
        control.MapPost("/failures/{id}/retry", (HttpContext http, ControlBus bus, string id, int? max) =>
            Data(http, bus, new RetryFailures(id, Max: max ?? int.MaxValue), StatusCodes.Status202Accepted));
        control.MapPost("/failures/retry", (HttpContext http, ControlBus bus, FailureRetryRequest body) =>
            Data(http, bus, new RetryFailures(null, body.Queue, body.MessageType, body.From, body.To, body.CorrelationId, body.Reason, body.Max ?? int.MaxValue),
                StatusCodes.Status202Accepted));
        control.MapPost("/failures/{queue}/messages/{messageId}/retry", (HttpContext http, ControlBus bus, string queue, string messageId, FailureEditRequest body) =>
        {
            var headers = body.Headers ?? [];
            return Data(http, bus, new EditAndRetryFailure(queue, messageId, body.Body,
                headers.Where(h => h.Value is not null).ToDictionary(h => h.Key, h => h.Value!, StringComparer.Ordinal),
                string.Join(',', headers.Where(h => h.Value is null).Select(h => h.Key))), StatusCodes.Status202Accepted);
        });
        control.MapDelete("/failures/{id}", (HttpContext http, ControlBus bus, string id, string? confirm) =>
            Data(http, bus, new DiscardFailures(id, confirm), StatusCodes.Status200OK));
        control.MapPost("/failures/{id}/archive", (HttpContext http, ControlBus bus, string id, string? confirm) =>
            Data(http, bus, new ArchiveFailures(id, confirm), StatusCodes.Status200OK));
    }

    static async Task<IResult> Data<TCommand>(HttpContext http, ControlBus bus, TCommand command, int status)
        where TCommand : class
    {
        var result = await bus.ExecuteAsync(await ControlEndpoints.CallerAsync(http).ConfigureAwait(false), "http", command, http.RequestAborted).ConfigureAwait(false);
        return result.Outcome == ControlOutcome.Ok
            ? Results.Json(result.Data, statusCode: status)
            : await ControlEndpoints.RunAsync(Task.FromResult(result)).ConfigureAwait(false);
    }
}
