using MassTransit;
using MassTransit.Courier.Contracts;

namespace Integration.Patterns.RoutingSlips;

/// <summary>One step of an itinerary as declared: a Courier activity, or a detour holding steps of its own.</summary>
public abstract record ItineraryStep(string Name);

/// <summary>A Courier activity visited by the slip.</summary>
/// <param name="Name">Activity name in the slip's log (the activity's type name without <c>Activity</c>).</param>
/// <param name="ActivityType">The activity.</param>
/// <param name="ArgumentsType">Its arguments.</param>
/// <param name="LogType">Its compensation log, or null when it only executes.</param>
/// <param name="ExecuteQueue">Queue of its execute endpoint.</param>
/// <param name="CompensateQueue">Queue of its compensate endpoint, or null when it only executes.</param>
/// <param name="Arguments">Fixed arguments, or null to take everything from the slip's variables.</param>
public sealed record ActivityStep(string Name, Type ActivityType, Type ArgumentsType, Type? LogType, string ExecuteQueue, string? CompensateQueue,
    object? Arguments) : ItineraryStep(Name);

/// <summary>A detour: its steps run only while its switch is on.</summary>
/// <param name="Name">Detour name; its switch is <c>detour:{Name}</c> on the itinerary.</param>
/// <param name="Steps">What the revised itinerary visits first.</param>
/// <param name="Enabled">Initial state of the switch.</param>
public sealed record DetourStep(string Name, IReadOnlyList<ItineraryStep> Steps, bool Enabled) : ItineraryStep(Name)
{
    /// <summary>Switch name on the itinerary.</summary>
    public string SwitchName => $"detour:{Name}";
}

/// <summary>A wire tap of the slip's events.</summary>
/// <param name="Queue">Destination queue.</param>
/// <param name="Events">Which events.</param>
public sealed record ItineraryWireTap(string Queue, RoutingSlipEvents Events);

/// <summary>An itinerary as declared: validated once, then read by <see cref="IItineraries"/> at run time.</summary>
/// <param name="Name">Itinerary name.</param>
/// <param name="Steps">Steps in order.</param>
/// <param name="WireTaps">Event subscriptions.</param>
public sealed record ItineraryDefinition(string Name, IReadOnlyList<ItineraryStep> Steps, IReadOnlyList<ItineraryWireTap> WireTaps)
{
    /// <summary>Every mistake in this itinerary, each naming the itinerary and the step.</summary>
    public IEnumerable<string> Validate()
    {
        if (string.IsNullOrWhiteSpace(Name))
        {
            yield return "an itinerary needs a name";
            yield break;
        }

        if (Steps.Count == 0)
            yield return $"Itinerary '{Name}': no steps; add at least one Activity<...>() or ExecuteActivity<...>()";
        if (Steps.Count > 0 && Steps[^1] is DetourStep last)
            yield return $"Itinerary '{Name}': the last step is detour '{last.Name}'; a detour needs a step after it to return to";
        foreach (var failure in ValidateSteps(Steps, "step"))
            yield return $"Itinerary '{Name}' {failure}";
        foreach (var duplicate in Detours(Steps).GroupBy(d => d.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
            yield return $"Itinerary '{Name}': detour '{duplicate.Key}' is declared {duplicate.Count()} times; switches are found by name";
        foreach (var tap in WireTaps)
        {
            if (!QueueNames.IsValid(tap.Queue))
                yield return $"Itinerary '{Name}' wire tap: '{tap.Queue}' is not a valid queue name";
        }
    }

    static IEnumerable<string> ValidateSteps(IReadOnlyList<ItineraryStep> steps, string path)
    {
        for (var i = 0; i < steps.Count; i++)
        {
            var where = $"{path} {i + 1} ({steps[i].Name})";
            switch (steps[i])
            {
                case ActivityStep activity when !QueueNames.IsValid(activity.ExecuteQueue):
                    yield return $"{where}: '{activity.ExecuteQueue}' is not a valid queue name";
                    break;
                case DetourStep detour:
                    if (string.IsNullOrWhiteSpace(detour.Name))
                        yield return $"{where}: the detour needs a name (the control bus switches it by name)";
                    if (detour.Steps.Count == 0)
                        yield return $"{where}: detour '{detour.Name}' has no steps";
                    if (detour.Steps.OfType<DetourStep>().Any())
                        yield return $"{where}: detour '{detour.Name}' contains a detour; nest nothing, declare them one after the other";
                    foreach (var failure in ValidateSteps(detour.Steps, $"{where} step"))
                        yield return failure;
                    break;
            }
        }
    }

    /// <summary>Every detour of the itinerary.</summary>
    public IEnumerable<DetourStep> Detours() => Detours(Steps);

    static IEnumerable<DetourStep> Detours(IEnumerable<ItineraryStep> steps) => steps.OfType<DetourStep>();

    /// <summary>Every activity of the itinerary, detours included.</summary>
    public IEnumerable<ActivityStep> Activities() =>
        Steps.SelectMany(s => s is DetourStep d ? d.Steps.OfType<ActivityStep>() : s is ActivityStep a ? [a] : []);
}

static class QueueNames
{
    public static bool IsValid(string? queue) =>
        !string.IsNullOrWhiteSpace(queue) && queue.Length <= 255 && queue.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':');
}
