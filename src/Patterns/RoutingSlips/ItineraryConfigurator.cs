using MassTransit;
using MassTransit.Courier.Contracts;

namespace Integration.Patterns.RoutingSlips;

/// <summary>
/// Declares one itinerary: the Courier activities a routing slip visits, in order, with the detours an operator can
/// switch on at run time and the queues that receive a copy of the slip's events.
/// </summary>
public interface IItineraryConfigurator
{
    /// <summary>Name of the itinerary (what <see cref="IItineraries.Execute"/> is called with).</summary>
    string Itinerary { get; }

    /// <summary>
    /// Adds a step that can be undone: <typeparamref name="TActivity"/> executes with <typeparamref name="TArguments"/>
    /// and, when a later step fails, compensates from the <typeparamref name="TLog"/> it recorded (newest step first).
    /// Arguments come from <paramref name="arguments"/> and, for the properties it does not set, from the slip's variables.
    /// </summary>
    IItineraryConfigurator Activity<TActivity, TArguments, TLog>(object? arguments = null)
        where TActivity : class, IActivity<TArguments, TLog>
        where TArguments : class
        where TLog : class;

    /// <summary>Adds a step with nothing to undo (a notification, a lookup): it executes only.</summary>
    IItineraryConfigurator ExecuteActivity<TActivity, TArguments>(object? arguments = null)
        where TActivity : class, IExecuteActivity<TArguments>
        where TArguments : class;

    /// <summary>
    /// Detour (EIP) as an itinerary revision: while the switch <c>detour:{name}</c> of this itinerary is on
    /// (<see cref="Routing.RouteControl.SetSwitch"/>, the control bus), a slip reaching this point has its itinerary
    /// revised to visit <paramref name="steps"/> first, then the rest of the original itinerary.
    /// </summary>
    IItineraryConfigurator Detour(string name, Action<IItineraryConfigurator> steps, bool enabled = false);

    /// <summary>Wire tap (EIP) of the slip: <paramref name="queue"/> receives the slip's <paramref name="events"/> (default: all).</summary>
    IItineraryConfigurator WireTap(string queue, RoutingSlipEvents events = RoutingSlipEvents.All);
}

/// <summary>Declares itineraries; see <see cref="RoutingSlipRegistrationExtensions.AddIntegrationItineraries"/>.</summary>
public interface IItinerariesBuilder
{
    /// <summary>Declares the itinerary <paramref name="name"/>.</summary>
    IItinerariesBuilder Itinerary(string name, Action<IItineraryConfigurator> configure);
}
