using Integration.Patterns.Routing;
using MassTransit;
using MassTransit.Courier.Contracts;

namespace Integration.Patterns.RoutingSlips;

/// <summary>Builds and starts routing slips from the declared itineraries.</summary>
public interface IItineraries
{
    /// <summary>The declared itineraries.</summary>
    IReadOnlyList<ItineraryDefinition> All { get; }

    /// <summary>
    /// A routing slip for <paramref name="itinerary"/>: its activities in order (detours as revision points), its wire
    /// taps as event subscriptions, and <paramref name="variables"/> (an object or a dictionary) as the slip's variables.
    /// </summary>
    /// <exception cref="ArgumentException">No itinerary has that name.</exception>
    RoutingSlip Plan(string itinerary, Guid trackingNumber, object? variables = null);

    /// <summary>Plans a slip with a new tracking number and sends it to its first activity; returns the tracking number.</summary>
    Task<Guid> Execute(string itinerary, object? variables = null, CancellationToken cancellationToken = default);
}

sealed class Itineraries : IItineraries
{
    readonly ItineraryCatalog _catalog;
    readonly IBus _bus;

    public Itineraries(ItineraryCatalog catalog, RouteControl control, IBus bus)
    {
        _catalog = catalog;
        _bus = bus;
        Publish(catalog, control);
    }

    /// <summary>Lists itineraries next to the routes on the control bus, and their detours next to the routes' switches.</summary>
    internal static void Publish(ItineraryCatalog catalog, RouteControl control)
    {
        foreach (var itinerary in catalog.Itineraries)
        {
            foreach (var detour in itinerary.Detours())
                control.AddSwitch(itinerary.Name, detour.SwitchName, "Detour", detour.Enabled);
            control.AddRoute(Describe(itinerary));
        }
    }

    public IReadOnlyList<ItineraryDefinition> All => _catalog.Itineraries;

    public RoutingSlip Plan(string itinerary, Guid trackingNumber, object? variables = null)
    {
        var definition = _catalog.Find(itinerary)
            ?? throw new ArgumentException($"No itinerary '{itinerary}'; declared: {string.Join(", ", _catalog.Itineraries.Select(i => i.Name))}", nameof(itinerary));
        var builder = new RoutingSlipBuilder(trackingNumber);
        foreach (var step in definition.Steps)
        {
            switch (step)
            {
                case ActivityStep activity:
                    AddActivity(builder, activity);
                    break;
                case DetourStep detour:
                    builder.AddActivity(detour.SwitchName, new Uri($"queue:{ItineraryCatalog.DetourQueue}"),
                        new DetourArguments { Itinerary = definition.Name, Detour = detour.Name });
                    break;
            }
        }

        foreach (var tap in definition.WireTaps)
            builder.AddSubscription(new Uri($"queue:{tap.Queue}"), tap.Events);
        builder.AddVariable(ItineraryVariable, definition.Name);
        switch (variables)
        {
            case null:
                break;
            case IEnumerable<KeyValuePair<string, object>> dictionary:
                builder.SetVariables(dictionary);
                break;
            default:
                builder.SetVariables(variables);
                break;
        }

        return builder.Build();
    }

    public async Task<Guid> Execute(string itinerary, object? variables = null, CancellationToken cancellationToken = default)
    {
        var trackingNumber = NewId.NextGuid();
        await _bus.Execute(Plan(itinerary, trackingNumber, variables), cancellationToken).ConfigureAwait(false);
        return trackingNumber;
    }

    /// <summary>The variable naming the itinerary a slip was planned from.</summary>
    public const string ItineraryVariable = "Integration-Itinerary";

    internal static void AddActivity(MassTransit.IItineraryBuilder builder, ActivityStep activity)
    {
        var address = new Uri($"queue:{activity.ExecuteQueue}");
        if (activity.Arguments is null)
            builder.AddActivity(activity.Name, address);
        else
            builder.AddActivity(activity.Name, address, activity.Arguments);
    }

    static RouteDescription Describe(ItineraryDefinition itinerary)
    {
        var steps = new List<RouteStepDescription>();
        foreach (var step in itinerary.Steps)
        {
            switch (step)
            {
                case ActivityStep a:
                    steps.Add(new RouteStepDescription(steps.Count + 1, a.LogType is null ? "ExecuteActivity" : "Activity", a.Name, a.ArgumentsType.Name));
                    break;
                case DetourStep d:
                    steps.Add(new RouteStepDescription(steps.Count + 1, "Detour", d.SwitchName, nameof(RoutingSlip)));
                    steps.AddRange(d.Steps.OfType<ActivityStep>().Select(a =>
                        new RouteStepDescription(steps.Count + 1, "DetourActivity", $"{d.SwitchName}/{a.Name}", a.ArgumentsType.Name)));
                    break;
            }
        }

        steps.AddRange(itinerary.WireTaps.Select(t => new RouteStepDescription(steps.Count + 1, "WireTap", $"wiretap:{t.Queue}", nameof(RoutingSlip))));
        return new RouteDescription(itinerary.Name, nameof(RoutingSlip), steps);
    }
}
