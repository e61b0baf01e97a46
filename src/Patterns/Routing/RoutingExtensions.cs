using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Patterns.Routing;

/// <summary>Registers routes with MassTransit: declare them with <see cref="AddIntegrationRoutes"/>, create their endpoints with <see cref="ConfigureIntegrationRoutes"/>.</summary>
public static class RoutingExtensions
{
    /// <summary>
    /// Declares routes. Call once or several times; every route is validated when the bus is configured and the bus
    /// does not start if any is wrong (<see cref="RouteConfigurationException"/> lists every mistake).
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationRoutes(this IBusRegistrationConfigurator bus, Action<IRouteBuilder> routes)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(routes);
        var catalog = bus.Where(d => d.ServiceType == typeof(RouteCatalog)).Select(d => d.ImplementationInstance).OfType<RouteCatalog>().FirstOrDefault();
        if (catalog is null)
        {
            catalog = new RouteCatalog();
            bus.AddSingleton(catalog);
        }

        bus.TryAddSingleton<RouteControl>();
        bus.TryAddSingleton(sp => new PatternMetrics(sp.GetService<IMeterFactory>()));
        routes(catalog);
        return bus;
    }

    /// <summary>Validates every declared route and creates one receive endpoint per route. Call inside <c>UsingRabbitMq</c>/<c>UsingInMemory</c>.</summary>
    /// <exception cref="RouteConfigurationException">A route is misconfigured.</exception>
    public static void ConfigureIntegrationRoutes(this IReceiveConfigurator configurator, IBusRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);
        if (context.GetService<RoutingSlips.ItineraryCatalog>() is { } itineraries)
            RoutingSlips.Itineraries.Publish(itineraries, context.GetRequiredService<RouteControl>());
        var catalog = context.GetService<RouteCatalog>();
        if (catalog is null)
            return;
        var failures = catalog.Validate();
        if (failures.Count > 0)
            throw new RouteConfigurationException(failures);
        var control = context.GetRequiredService<RouteControl>();
        var before = control.Workers.Count;
        foreach (var route in catalog.Routes)
            route.Configure(configurator, control, context);
        var workers = control.Workers.Skip(before).ToList();
        if (workers.Count > 0)
        {
            if (configurator is not IBusObserverConnector observers)
                throw new RouteConfigurationException(workers.Select(w => $"{w.Name}: needs background work, so call ConfigureIntegrationRoutes on the bus configurator (UsingRabbitMq/UsingInMemory), not on a receive endpoint").ToList());
            observers.ConnectBusObserver(new RouteWorkerObserver(workers));
        }
    }
}
