namespace Integration.Host.Operations;

/// <summary>Control commands over <see cref="DeadLetterService"/>: list, peek, replay, delete (with confirmation).</summary>
public static class DeadLetterCommands
{
    static ControlResult Missing(string queue) => new(ControlOutcome.NotFound, $"No queue '{queue}'");

    /// <summary>Registers the dead-letter commands and their service.</summary>
    public static IServiceCollection AddDeadLetterCommands(this IServiceCollection services)
    {
        services.AddHttpClient("rabbitmq-management");
        services.AddSingleton<DeadLetterService>();

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("dead-letters.list", ControlRole.Viewer, async (command, ct) =>
        {
            var service = sp.GetRequiredService<DeadLetterService>();
            if (string.IsNullOrWhiteSpace(command.Target))
                return ControlResult.Ok("Error queues", await service.ListQueuesAsync(ct).ConfigureAwait(false));
            var take = int.TryParse(command.Argument("take"), out var n) ? n : 50;
            var letters = await service.PeekAsync(command.Target, take, ct).ConfigureAwait(false);
            return letters is null ? Missing(command.Target) : ControlResult.Ok($"Messages in '{command.Target}' (left in place)", letters);
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("dead-letters.replay", ControlRole.Operator, async (command, ct) =>
        {
            if (string.IsNullOrWhiteSpace(command.Target) || !command.Target.EndsWith(DeadLetterService.ErrorSuffix, StringComparison.Ordinal))
                return new ControlResult(ControlOutcome.Invalid, $"dead-letters.replay needs an error queue (name ending in {DeadLetterService.ErrorSuffix}) as its target");
            var replayed = await sp.GetRequiredService<DeadLetterService>().ReplayAsync(command.Target, command.Argument("messageId"), ct).ConfigureAwait(false);
            return replayed is null ? Missing(command.Target) : ControlResult.Ok($"Replayed {replayed} message(s) to '{command.Target[..^DeadLetterService.ErrorSuffix.Length]}'", new { replayed });
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("dead-letters.delete", ControlRole.Operator, async (command, ct) =>
        {
            if (string.IsNullOrWhiteSpace(command.Target) || !command.Target.EndsWith(DeadLetterService.ErrorSuffix, StringComparison.Ordinal))
                return new ControlResult(ControlOutcome.Invalid, $"dead-letters.delete needs an error queue (name ending in {DeadLetterService.ErrorSuffix}) as its target");
            if (command.Argument("confirm") != command.Target)
                return new ControlResult(ControlOutcome.Invalid, $"Deleting needs confirmation: repeat the queue name as argument 'confirm' (confirm={command.Target})");
            var deleted = await sp.GetRequiredService<DeadLetterService>().DeleteAsync(command.Target, command.Argument("messageId"), ct).ConfigureAwait(false);
            return deleted is null ? Missing(command.Target) : ControlResult.Ok($"Deleted {deleted} message(s) from '{command.Target}'", new { deleted });
        }));

        return services;
    }

    /// <summary>Maps <c>/api/control/dead-letters</c>.</summary>
    public static RouteGroupBuilder MapDeadLetters(this RouteGroupBuilder control)
    {
        ArgumentNullException.ThrowIfNull(control);
        control.MapGet("/dead-letters", (HttpContext http, ControlBus bus, ControlAuthorization auth) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("dead-letters.list")));
        control.MapGet("/dead-letters/{queue}", (HttpContext http, ControlBus bus, ControlAuthorization auth, string queue, int? take) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("dead-letters.list", queue, Args(("take", take?.ToString(System.Globalization.CultureInfo.InvariantCulture))))));
        control.MapPost("/dead-letters/{queue}/replay", (HttpContext http, ControlBus bus, ControlAuthorization auth, string queue, string? messageId) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("dead-letters.replay", queue, Args(("messageId", messageId)))));
        control.MapDelete("/dead-letters/{queue}", (HttpContext http, ControlBus bus, ControlAuthorization auth, string queue, string? confirm, string? messageId) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("dead-letters.delete", queue, Args(("confirm", confirm), ("messageId", messageId)))));
        return control;
    }

    static Dictionary<string, string> Args(params (string Name, string? Value)[] values) =>
        values.Where(v => v.Value is not null).ToDictionary(v => v.Name, v => v.Value!, StringComparer.Ordinal);
}
