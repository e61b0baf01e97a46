using System.Text.Json;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace Integration.Host.Operations;

/// <summary>A control command, the same over HTTP and over the RabbitMQ control queue.</summary>
/// <param name="Action">What to do, e.g. <c>endpoint.pause</c>.</param>
/// <param name="Target">What to do it to (endpoint, logger category, route), when the action needs one.</param>
/// <param name="Arguments">Further arguments, e.g. <c>level</c>.</param>
public sealed record ControlCommand(string Action, string? Target = null, IReadOnlyDictionary<string, string>? Arguments = null)
{
    /// <summary>The argument <paramref name="name"/>, or null when it is missing or empty.</summary>
    public string? Argument(string name) => Arguments?.TryGetValue(name, out var value) == true && !string.IsNullOrEmpty(value) ? value : null;
}

/// <summary>How a control command ended.</summary>
public enum ControlOutcome
{
    /// <summary>Done.</summary>
    Ok,

    /// <summary>No or unknown key.</summary>
    Unauthorized,

    /// <summary>The key's role may not do this.</summary>
    Denied,

    /// <summary>The target does not exist.</summary>
    NotFound,

    /// <summary>Unknown action or bad arguments.</summary>
    Invalid,

    /// <summary>It threw.</summary>
    Failed,
}

/// <summary>The result of a control command.</summary>
public sealed record ControlResult(ControlOutcome Outcome, string Message, object? Data = null)
{
    /// <summary>Success with data.</summary>
    public static ControlResult Ok(string message, object? data = null) => new(ControlOutcome.Ok, message, data);
}

/// <summary>One command the control bus can run. Features add their own (route switches, rate limits) by registering more.</summary>
public interface IControlCommandHandler
{
    /// <summary>The action name it answers, e.g. <c>route.detour</c>.</summary>
    string Action { get; }

    /// <summary>Least role that may run it.</summary>
    ControlRole Role { get; }

    /// <summary>Runs the command.</summary>
    Task<ControlResult> HandleAsync(ControlCommand command, CancellationToken cancellationToken);
}

/// <summary>A handler made of a delegate: how the built-in commands are written.</summary>
public sealed class ControlCommandHandler(string action, ControlRole role, Func<ControlCommand, CancellationToken, Task<ControlResult>> run) : IControlCommandHandler
{
    /// <inheritdoc />
    public string Action => action;

    /// <inheritdoc />
    public ControlRole Role => role;

    /// <inheritdoc />
    public Task<ControlResult> HandleAsync(ControlCommand command, CancellationToken cancellationToken) => run(command, cancellationToken);
}

/// <summary>Authorizes, runs and audits control commands from every channel.</summary>
public sealed partial class ControlBus(IEnumerable<IControlCommandHandler> handlers, ControlAuditLog audit, ILogger<ControlBus> logger)
{
    readonly Dictionary<string, IControlCommandHandler> _handlers = handlers.ToDictionary(h => h.Action, StringComparer.OrdinalIgnoreCase);

    /// <summary>Every action, with the role it needs.</summary>
    public IEnumerable<(string Action, ControlRole Role)> Actions => _handlers.Values.Select(h => (h.Action, h.Role)).OrderBy(a => a.Action, StringComparer.Ordinal);

    /// <summary>Runs <paramref name="command"/> for <paramref name="caller"/> (null: unauthenticated) and audits the outcome.</summary>
    public async Task<ControlResult> ExecuteAsync(ControlCaller? caller, string channel, ControlCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        var details = command.Arguments is { Count: > 0 } ? JsonSerializer.Serialize(command.Arguments) : null;
        ControlResult result;
        if (caller is null)
            result = new ControlResult(ControlOutcome.Unauthorized, "A control bus key is required (X-Api-Key or Authorization: Bearer)");
        else if (!_handlers.TryGetValue(command.Action ?? "", out var handler))
            result = new ControlResult(ControlOutcome.Invalid, $"Unknown action '{command.Action}'; known: {string.Join(", ", _handlers.Keys.Order(StringComparer.Ordinal))}");
        else if (caller.Role < handler.Role)
            result = new ControlResult(ControlOutcome.Denied, $"Key '{caller.Name}' ({caller.Role}) may not run '{handler.Action}' (needs {handler.Role})");
        else
        {
            try
            {
                result = await handler.HandleAsync(command, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                LogFailed(logger, exception, command.Action ?? "", command.Target);
                result = new ControlResult(ControlOutcome.Failed, exception.Message);
            }
        }

        var actor = caller?.Name ?? "anonymous";
        LogCommand(logger, actor, channel, command.Action ?? "", command.Target, result.Outcome);
        await audit.WriteAsync(actor, channel, command.Action ?? "", command.Target, details, Outcome(result.Outcome), cancellationToken).ConfigureAwait(false);
        return result;
    }

    static string Outcome(ControlOutcome outcome) => outcome switch
    {
        ControlOutcome.Ok => "ok",
        ControlOutcome.Unauthorized => "unauthorized",
        ControlOutcome.Denied => "denied",
        ControlOutcome.NotFound => "not-found",
        ControlOutcome.Invalid => "invalid",
        _ => "failed",
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Control {Action} on {Target} by {Actor} via {Channel}: {Outcome}")]
    static partial void LogCommand(ILogger logger, string actor, string channel, string action, string? target, ControlOutcome outcome);

    [LoggerMessage(Level = LogLevel.Error, Message = "Control {Action} on {Target} failed")]
    static partial void LogFailed(ILogger logger, Exception exception, string action, string? target);
}

/// <summary>The built-in commands: routes and endpoints, pause/resume, log level, audit.</summary>
public static class BuiltInControlCommands
{
    /// <summary>Registers the built-in handlers.</summary>
    public static IServiceCollection AddBuiltInControlCommands(this IServiceCollection services)
    {
        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("routes.list", ControlRole.Viewer, (_, _) =>
        {
            var probe = sp.GetRequiredService<IBus>().GetProbeResult();
            var routes = sp.GetService<Integration.Patterns.Routing.RouteControl>() is { } control ? RouteCommands.Describe(control) : null;
            return Task.FromResult(ControlResult.Ok("Integration routes with their steps and switches, and every receive endpoint's pipeline from the filters' probes",
                new { routes, endpoints = probe.Results }));
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("endpoints.list", ControlRole.Viewer, (_, _) =>
        {
            var endpoints = sp.GetRequiredService<ReceiveEndpointRegistry>().All
                .Select(e => new { name = e.Name, address = e.InputAddress.ToString(), state = e.Paused ? "paused" : "running" });
            return Task.FromResult(ControlResult.Ok("Receive endpoints", endpoints));
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("endpoint.pause", ControlRole.Operator, async (command, ct) =>
            string.IsNullOrWhiteSpace(command.Target) ? new ControlResult(ControlOutcome.Invalid, "endpoint.pause needs the endpoint (queue) name as its target")
            : await sp.GetRequiredService<ReceiveEndpointRegistry>().PauseAsync(command.Target, ct).ConfigureAwait(false)
                ? ControlResult.Ok($"Endpoint '{command.Target}' paused; its messages wait in the queue")
                : new ControlResult(ControlOutcome.NotFound, $"No receive endpoint '{command.Target}'")));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("endpoint.resume", ControlRole.Operator, async (command, ct) =>
            string.IsNullOrWhiteSpace(command.Target) ? new ControlResult(ControlOutcome.Invalid, "endpoint.resume needs the endpoint (queue) name as its target")
            : await sp.GetRequiredService<ReceiveEndpointRegistry>().ResumeAsync(command.Target, ct).ConfigureAwait(false)
                ? ControlResult.Ok($"Endpoint '{command.Target}' consuming again")
                : new ControlResult(ControlOutcome.NotFound, $"No receive endpoint '{command.Target}'")));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("log-level.set", ControlRole.Operator, (command, _) =>
        {
            var category = string.IsNullOrWhiteSpace(command.Target) ? "Default" : command.Target;
            if (command.Arguments?.TryGetValue("level", out var text) != true || !Enum.TryParse<LogLevel>(text, ignoreCase: true, out var level)
                || !Enum.IsDefined(level))
            {
                return Task.FromResult(new ControlResult(ControlOutcome.Invalid,
                    $"log-level.set needs argument 'level', one of {string.Join(", ", Enum.GetNames<LogLevel>())}"));
            }

            var overrides = sp.GetRequiredService<LogLevelOverrides>();
            overrides.Set(category, level);
            return Task.FromResult(ControlResult.Ok($"Log level of '{category}' is now {level}", overrides.Current));
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("audit.list", ControlRole.Viewer, async (command, ct) =>
        {
            var take = int.TryParse(command.Argument("take"), out var n) ? n : 50;
            return ControlResult.Ok("Newest control actions first", await sp.GetRequiredService<ControlAuditLog>().ReadAsync(take, ct).ConfigureAwait(false));
        }));

        return services;
    }
}
