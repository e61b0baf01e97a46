using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Patterns.RoutingSlips;

/// <summary>Registers itineraries (routing slips over Courier activities).</summary>
public static class RoutingSlipRegistrationExtensions
{
    /// <summary>
    /// Declares itineraries and registers their activities; validated right here, so a wrong itinerary stops the host
    /// from starting (<see cref="RouteConfigurationException"/> lists every mistake, naming the itinerary and step).
    /// The activities' endpoints are created by <see cref="RoutingExtensions.ConfigureIntegrationRoutes"/> (a bus started
    /// without that call fails, naming it); start slips with <see cref="IItineraries"/>.
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationItineraries(this IBusRegistrationConfigurator bus, Action<IItinerariesBuilder> itineraries)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(itineraries);
        var catalog = RoutingExtensions.Declarations(bus, () => new ItineraryCatalog(bus));

        itineraries(catalog);
        var failures = catalog.Validate();
        if (failures.Count > 0)
            throw new RouteConfigurationException(failures);

        RoutingExtensions.AddRouteServices(bus);
        bus.TryAddSingleton<IItineraries, Itineraries>();
        return bus;
    }
}
