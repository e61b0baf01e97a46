using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integration.Operations;

/// <summary>
/// A control command as it travels over <c>POST /api/control/commands</c> and the RabbitMQ control queue: the action,
/// what it applies to, and named arguments. The control bus binds it to the action's typed command
/// (<see cref="OperationsBuilder.AddCommand{TCommand, THandler}"/>): <see cref="Target"/> fills the command's
/// <c>target</c> parameter, each argument the parameter of the same name.
/// </summary>
/// <param name="Action">What to do, e.g. <c>endpoint.pause</c>.</param>
/// <param name="Target">What to do it to (endpoint, logger category, route), when the action needs one.</param>
/// <param name="Arguments">Further arguments, e.g. <c>level</c>.</param>
public sealed record ControlCommand(string Action, string? Target = null, IReadOnlyDictionary<string, string>? Arguments = null);

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

    /// <summary>The target does not exist.</summary>
    public static ControlResult NotFound(string message) => new(ControlOutcome.NotFound, message);

    /// <summary>The command cannot be run as given.</summary>
    public static ControlResult Invalid(string message) => new(ControlOutcome.Invalid, message);
}

/// <summary>
/// Runs one typed control command. A handler is a DI singleton; one class may handle several commands of a feature.
/// Arguments arrive typed and checked (the control bus refuses a missing or malformed one before the handler runs).
/// </summary>
/// <typeparam name="TCommand">The command, a record whose constructor parameters are its target and arguments.</typeparam>
public interface IControlHandler<in TCommand>
    where TCommand : class
{
    /// <summary>Runs <paramref name="command"/>.</summary>
    Task<ControlResult> HandleAsync(TCommand command, CancellationToken cancellationToken);
}

/// <summary>An action the control bus knows: its name, the least role that may run it, and its command type.</summary>
public sealed record ControlAction(string Name, ControlRole Role, Type CommandType);

/// <summary>One registered command: how to find and run its handler.</summary>
sealed class ControlRegistration(ControlAction action, Func<IServiceProvider, object, CancellationToken, Task<ControlResult>> run)
{
    public ControlAction Action { get; } = action;

    public Task<ControlResult> RunAsync(IServiceProvider services, object command, CancellationToken cancellationToken) => run(services, command, cancellationToken);

    public static ControlRegistration For<TCommand, THandler>(string name, ControlRole role)
        where TCommand : class
        where THandler : class, IControlHandler<TCommand> =>
        new(new ControlAction(name, role, typeof(TCommand)),
            (services, command, cancellationToken) => services.GetRequiredService<THandler>().HandleAsync((TCommand)command, cancellationToken));
}

/// <summary>Authorizes, runs and audits control commands from every channel (HTTP, RabbitMQ, the dashboard).</summary>
public sealed partial class ControlBus
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    readonly Dictionary<string, ControlRegistration> _byName;
    readonly Dictionary<Type, ControlRegistration> _byType;
    readonly IServiceProvider _services;
    readonly ControlAuditLog _audit;
    readonly ILogger<ControlBus> _logger;

    internal ControlBus(IEnumerable<ControlRegistration> registrations, IServiceProvider services, ControlAuditLog audit, ILogger<ControlBus> logger)
    {
        var all = registrations.ToList();
        var duplicate = all.GroupBy(r => r.Action.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new InvalidOperationException($"Control action '{duplicate.Key}' is registered more than once");
        _byName = all.ToDictionary(r => r.Action.Name, StringComparer.OrdinalIgnoreCase);
        _byType = all.GroupBy(r => r.Action.CommandType).ToDictionary(g => g.Key, g => g.First());
        _services = services;
        _audit = audit;
        _logger = logger;
    }

    /// <summary>Every action, with the role it needs, by name.</summary>
    public IReadOnlyList<ControlAction> Actions => _byName.Values.Select(r => r.Action).OrderBy(a => a.Name, StringComparer.Ordinal).ToList();

    /// <summary>Binds <paramref name="command"/> to its action's typed command, then runs it for <paramref name="caller"/> (null: unauthenticated) and audits the outcome.</summary>
    public Task<ControlResult> ExecuteAsync(ControlCaller? caller, string channel, ControlCommand command, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        var details = command.Arguments is { Count: > 0 } ? JsonSerializer.Serialize(command.Arguments) : null;
        if (!_byName.TryGetValue(command.Action ?? "", out var registration))
        {
            var unknown = new ControlResult(ControlOutcome.Invalid, $"Unknown action '{command.Action}'; known: {string.Join(", ", _byName.Keys.Order(StringComparer.Ordinal))}");
            return RunAsync(caller, channel, command.Action ?? "", command.Target, details, null, unknown, cancellationToken);
        }

        var bound = ControlCommandBinder.Bind(registration.Action, command, out var error);
        return RunAsync(caller, channel, registration.Action.Name, command.Target, details, registration, bound is null ? ControlResult.Invalid(error!) : null,
            cancellationToken, bound);
    }

    /// <summary>Runs a typed command for <paramref name="caller"/> (null: unauthenticated) and audits the outcome.</summary>
    public Task<ControlResult> ExecuteAsync<TCommand>(ControlCaller? caller, string channel, TCommand command, CancellationToken cancellationToken)
        where TCommand : class
    {
        ArgumentNullException.ThrowIfNull(command);
        if (!_byType.TryGetValue(typeof(TCommand), out var registration))
            throw new InvalidOperationException($"No control action handles {typeof(TCommand).Name}: register it with AddCommand<{typeof(TCommand).Name}, THandler>(...)");
        var (target, details) = ControlCommandBinder.Describe(command, Json);
        return RunAsync(caller, channel, registration.Action.Name, target, details, registration, null, cancellationToken, command);
    }

    async Task<ControlResult> RunAsync(ControlCaller? caller, string channel, string action, string? target, string? details, ControlRegistration? registration,
        ControlResult? refusal, CancellationToken cancellationToken, object? command = null)
    {
        ControlResult result;
        if (caller is null)
            result = new ControlResult(ControlOutcome.Unauthorized, "A control bus key is required (X-Api-Key or Authorization: Bearer)");
        else if (caller.Refusal is not null)
            result = new ControlResult(caller.RefusalOutcome, caller.Refusal);
        else if (registration is not null && caller.Role < registration.Action.Role)
            result = new ControlResult(ControlOutcome.Denied, $"{caller.Describe()} ({caller.Role}) may not run '{action}' (needs {registration.Action.Role})");
        else if (registration is not null && _services.GetService<ControlAuthorization>()?.MissingPermission(caller, action) is { } missing)
            result = new ControlResult(ControlOutcome.Denied, $"{caller.Describe()} may not run '{action}': it needs '{missing}' ({ControlBusOptions.Section}:Jwt:Permissions:{action})");
        else if (refusal is not null || registration is null || command is null)
            result = refusal ?? ControlResult.Invalid($"Unknown action '{action}'");
        else
        {
            try
            {
                result = await registration.RunAsync(_services, command, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                LogFailed(_logger, exception, action, target);
                result = new ControlResult(ControlOutcome.Failed, exception.Message);
            }
        }

        var actor = caller?.Name ?? "anonymous";
        LogCommand(_logger, actor, channel, action, target, result.Outcome);
        await _audit.WriteAsync(actor, channel, action, target, details, Outcome(result.Outcome), cancellationToken).ConfigureAwait(false);
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
