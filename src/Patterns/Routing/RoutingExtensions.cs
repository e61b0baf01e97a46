using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Patterns.Routing;

/// <summary>
/// Registers routes with MassTransit: declare them with <see cref="AddIntegrationRoutes"/>, create their endpoints with
/// <see cref="ConfigureIntegrationRoutes"/> (the hosting library calls it for you). A bus whose routes or itineraries were
/// declared but never configured does not start.
/// </summary>
public static class RoutingExtensions
{
    /// <summary>
    /// Declares routes. Call once or several times; every route is validated when the bus is configured and the bus
    /// does not start if any is wrong (<see cref="RouteConfigurationException"/> lists every mistake). The routes' receive
    /// endpoints are created by <see cref="ConfigureIntegrationRoutes"/>; a bus started without that call fails, naming it.
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationRoutes(this IBusRegistrationConfigurator bus, Action<IRouteBuilder> routes)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(routes);
        var catalog = Declarations(bus, () => new RouteCatalog());

        AddRouteServices(bus);
        routes(catalog);
        return bus;
    }

    /// <summary>The one instance of a declaration catalog in <paramref name="services"/>: every Add... call adds to the same one.</summary>
    internal static T Declarations<T>(IServiceCollection services, Func<T> create)
        where T : class
    {
        if (services.Select(d => d.ImplementationInstance).OfType<T>().FirstOrDefault() is { } existing)
            return existing;
        var catalog = create();
        services.AddSingleton(catalog);
        return catalog;
    }

    /// <summary>What routes and itineraries share: their control, their metrics and the start check.</summary>
    internal static void AddRouteServices(IServiceCollection services)
    {
        services.TryAddSingleton<RouteControl>();
        services.TryAddSingleton(sp => new PatternMetrics(sp.GetService<IMeterFactory>()));
        services.AddBusObserver<RouteConfigurationCheck>();
    }

    /// <summary>
    /// Validates every declared route and creates one receive endpoint per route, and the endpoints of the itineraries'
    /// activities (<c>cfg.ConfigureEndpoints(context)</c>, before or after this call, leaves them out). Call once, inside
    /// <c>UsingRabbitMq</c>/<c>UsingInMemory</c>.
    /// </summary>
    /// <exception cref="RouteConfigurationException">A route is misconfigured.</exception>
    public static void ConfigureIntegrationRoutes(this IReceiveConfigurator configurator, IBusRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);
        var control = context.GetService<RouteControl>();
        if (control is null)
            return;   // neither routes nor itineraries were declared
        control.IsConfigured = true;

        if (context.GetService<RoutingSlips.ItineraryCatalog>() is { } itineraries)
        {
            RoutingSlips.Itineraries.Publish(itineraries, control);
            ConfigureActivityEndpoints(configurator, context, itineraries);
        }

        var catalog = context.GetService<RouteCatalog>();
        if (catalog is null)
            return;
        var failures = catalog.Validate();
        if (failures.Count > 0)
            throw new RouteConfigurationException(failures);
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

    /// <summary>
    /// Creates the receive endpoints of the itineraries' activities (excluded from <c>cfg.ConfigureEndpoints(context)</c>
    /// when they were declared, so the two calls never create one twice, in either order), as <c>ConfigureEndpoints</c> would:
    /// an activity that compensates gets its compensate endpoint, and its execute endpoint knows its address.
    /// </summary>
    static void ConfigureActivityEndpoints(IReceiveConfigurator configurator, IBusRegistrationContext context, RoutingSlips.ItineraryCatalog itineraries)
    {
        foreach (var (activity, execute, compensate) in itineraries.ActivityEndpoints)
        {
            configurator.ReceiveEndpoint(execute, executeEndpoint =>
            {
                if (compensate is null)
                {
                    executeEndpoint.ConfigureExecuteActivity(context, activity);
                    return;
                }

                configurator.ReceiveEndpoint(compensate, compensateEndpoint => executeEndpoint.ConfigureActivity(compensateEndpoint, context, activity));
            });
        }
    }
}

/// <summary>
/// Fails the bus start when routes or itineraries were declared (<c>AddIntegrationRoutes</c>, <c>AddIntegrationItineraries</c>)
/// but <c>ConfigureIntegrationRoutes</c> was never called while the bus was configured: their queues would have no
/// consumer, and messages would wait there with nothing saying why.
/// </summary>
internal sealed class RouteConfigurationCheck(RouteControl control, IServiceProvider services) : IBusObserver
{
    public void PostCreate(IBus bus)
    {
    }

    public void CreateFaulted(Exception exception)
    {
    }

    public Task PreStart(IBus bus)
    {
        if (control.IsConfigured)
            return Task.CompletedTask;
        var declared = new List<string>();
        if (services.GetService(typeof(RouteCatalog)) is RouteCatalog { Routes.Count: > 0 } routes)
            declared.Add($"routes {string.Join(", ", routes.Routes.Select(r => $"'{r.Name}'"))} (AddIntegrationRoutes)");
        if (services.GetService(typeof(RoutingSlips.ItineraryCatalog)) is RoutingSlips.ItineraryCatalog { Itineraries.Count: > 0 } itineraries)
            declared.Add($"itineraries {string.Join(", ", itineraries.Itineraries.Select(i => $"'{i.Name}'"))} (AddIntegrationItineraries)");
        if (declared.Count == 0)
            return Task.CompletedTask;
        throw new RouteConfigurationException([
            $"{string.Join(" and ", declared)} were declared but never configured on the bus: call cfg.ConfigureIntegrationRoutes(context) inside UsingRabbitMq/UsingInMemory, or nothing consumes their queues",
        ]);
    }

    public Task PostStart(IBus bus, Task<BusReady> busReady) => Task.CompletedTask;

    public Task StartFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    public Task PreStop(IBus bus) => Task.CompletedTask;

    public Task PostStop(IBus bus) => Task.CompletedTask;

    public Task StopFaulted(IBus bus, Exception exception) => Task.CompletedTask;
}
