using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.RoutingSlips;

/// <summary>Arguments of the detour point of an itinerary.</summary>
public sealed record DetourArguments
{
    /// <summary>Itinerary the slip was planned from.</summary>
    public string Itinerary { get; init; } = "";

    /// <summary>Detour name.</summary>
    public string Detour { get; init; } = "";
}

/// <summary>
/// The detour point of an itinerary: when the detour's switch is on, revises the slip's itinerary to visit the detour's
/// activities first and then the rest; otherwise completes and the slip goes on. Nothing to compensate.
/// </summary>
internal sealed class DetourActivity(ItineraryCatalog catalog, RouteControl control) : IExecuteActivity<DetourArguments>
{
    /// <inheritdoc />
    public Task<ExecutionResult> Execute(ExecuteContext<DetourArguments> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var arguments = context.Arguments;
        var itinerary = catalog.Find(arguments.Itinerary)
            ?? throw new InvalidOperationException($"Detour '{arguments.Detour}': this host declares no itinerary '{arguments.Itinerary}'");
        var detour = itinerary.Detours().FirstOrDefault(d => string.Equals(d.Name, arguments.Detour, StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"Itinerary '{itinerary.Name}' declares no detour '{arguments.Detour}' on this host");

        if (!control.AddSwitch(itinerary.Name, detour.SwitchName, "Detour", detour.Enabled).Enabled)
            return Task.FromResult(context.Completed());

        return Task.FromResult(context.ReviseItinerary(builder =>
        {
            foreach (var step in detour.Steps.OfType<ActivityStep>())
                Itineraries.AddActivity(builder, step);
            builder.AddActivitiesFromSourceItinerary();
        }));
    }
}
