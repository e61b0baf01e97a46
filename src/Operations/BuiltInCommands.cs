using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integration.Operations;

/// <summary><c>routes.list</c> (Viewer): routes with their steps and switches, and every receive endpoint's pipeline.</summary>
public sealed record ListRoutes;

/// <summary><c>endpoints.list</c> (Viewer): receive endpoints and whether they run.</summary>
public sealed record ListEndpoints;

/// <summary><c>endpoint.pause</c> (Operator): stop consuming a queue; its messages wait there.</summary>
/// <param name="Target">The endpoint's queue.</param>
public sealed record PauseEndpoint(string Target);

/// <summary><c>endpoint.resume</c> (Operator): consume a paused queue again.</summary>
/// <param name="Target">The endpoint's queue.</param>
public sealed record ResumeEndpoint(string Target);

/// <summary><c>log-level.set</c> (Operator): the minimum log level of a category, in this process.</summary>
/// <param name="Target">Logger category; <c>Default</c> when empty.</param>
/// <param name="Level">The level.</param>
public sealed record SetLogLevel(string? Target, LogLevel Level);

/// <summary><c>audit.list</c> (Viewer): control actions, newest first.</summary>
/// <param name="Take">How many.</param>
public sealed record ListAudit(int Take = 50);

/// <summary>Endpoints, routes, log levels and the audit log.</summary>
sealed class BuiltInCommands(IServiceProvider services, ReceiveEndpointRegistry endpoints, LogLevelOverrides logLevels, ControlAuditLog audit) :
    IControlHandler<ListRoutes>, IControlHandler<ListEndpoints>, IControlHandler<PauseEndpoint>, IControlHandler<ResumeEndpoint>, IControlHandler<SetLogLevel>,
    IControlHandler<ListAudit>
{
    public Task<ControlResult> HandleAsync(ListRoutes command, CancellationToken cancellationToken)
    {
        var probe = services.GetRequiredService<IBus>().GetProbeResult();
        var routes = services.GetService<RouteControl>() is { } control ? RouteCommands.Describe(control) : null;
        return Task.FromResult(ControlResult.Ok("Integration routes with their steps and switches, and every receive endpoint's pipeline from the filters' probes",
            new { routes, endpoints = probe.Results }));
    }

    public Task<ControlResult> HandleAsync(ListEndpoints command, CancellationToken cancellationToken) =>
        Task.FromResult(ControlResult.Ok("Receive endpoints",
            endpoints.All.Select(e => new { name = e.Name, address = e.InputAddress.ToString(), state = e.Paused ? "paused" : "running" })));

    public async Task<ControlResult> HandleAsync(PauseEndpoint command, CancellationToken cancellationToken) =>
        await endpoints.PauseAsync(command.Target, cancellationToken).ConfigureAwait(false)
            ? ControlResult.Ok($"Endpoint '{command.Target}' paused; its messages wait in the queue")
            : ControlResult.NotFound($"No receive endpoint '{command.Target}'");

    public async Task<ControlResult> HandleAsync(ResumeEndpoint command, CancellationToken cancellationToken) =>
        await endpoints.ResumeAsync(command.Target, cancellationToken).ConfigureAwait(false)
            ? ControlResult.Ok($"Endpoint '{command.Target}' consuming again")
            : ControlResult.NotFound($"No receive endpoint '{command.Target}'");

    public Task<ControlResult> HandleAsync(SetLogLevel command, CancellationToken cancellationToken)
    {
        var category = string.IsNullOrWhiteSpace(command.Target) ? "Default" : command.Target;
        logLevels.Set(category, command.Level);
        return Task.FromResult(ControlResult.Ok($"Log level of '{category}' is now {command.Level}", logLevels.Current));
    }

    public async Task<ControlResult> HandleAsync(ListAudit command, CancellationToken cancellationToken) =>
        ControlResult.Ok("Newest control actions first", await audit.ReadAsync(command.Take, cancellationToken).ConfigureAwait(false));
}
