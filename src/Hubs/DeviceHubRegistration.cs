using Integration.Operations;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Hubs;

/// <summary>
/// The device hub (hub and spoke) in one registration call and one map call: a SignalR hub devices connect to, fed from
/// the bus through a queue per host, so every declared event reaches its device whichever host holds the connection.
/// </summary>
public static class DeviceHubRegistration
{
    /// <summary>Where <see cref="MapDeviceHub"/> maps the hub by default.</summary>
    public const string DefaultPath = "/hubs/devices";

    /// <summary>
    /// Adds the device hub: SignalR, the events declared in <paramref name="configure"/>, this host's queue
    /// (<c>{QueuePrefix}-{instance}</c>, non-durable and auto-delete: the broker deletes it when the host's connection goes, so no broker state outlives the host), the presence
    /// announcements between hosts and the <c>devices.list</c> control command (Viewer). Call it among the bus
    /// registrations (the callback of <c>AddIntegrationDefaults</c> or <c>AddMassTransit</c>), once.
    /// </summary>
    public static IBusRegistrationConfigurator AddDeviceHub(this IBusRegistrationConfigurator bus, Action<DeviceHubConfigurator> configure)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(configure);
        if (bus.Any(d => d.ServiceType == typeof(DeviceHubSettings)))
            throw new InvalidOperationException("AddDeviceHub is called twice; declare every event in one call");
        var hub = new DeviceHubConfigurator();
        configure(hub);
        var failures = hub.Validate().ToList();
        if (failures.Count > 0)
            throw new InvalidOperationException(string.Join(Environment.NewLine, failures));

        // One queue per host instance: a fresh name per registration, so two hosts (or two in one test process) never share it.
        var instance = Guid.NewGuid().ToString("N")[..8];
        var settings = new DeviceHubSettings($"{hub.QueuePrefix}-{instance}", $"{Environment.MachineName.ToLowerInvariant()}-{instance}",
            hub.PresenceInterval, hub.Routes);
        bus.AddSignalR();
        bus.TryAddSingleton(TimeProvider.System);
        bus.AddSingleton(settings);
        bus.AddSingleton(provider => new DeviceConnections(settings, provider.GetRequiredService<TimeProvider>()));
        bus.AddSingleton<DeviceHubMetrics>();
        bus.AddHostedService<DevicePresencePublisher>();
        bus.AddIntegrationControlCommand<ListDevices, DeviceHubCommands>("devices.list", ControlRole.Viewer);

        foreach (var route in hub.Routes)
            route.Register(bus, e => HostQueue(e, settings.Queue));
        bus.AddConsumer<DevicePresenceConsumer>().Endpoint(e => HostQueue(e, settings.Queue));
        bus.AddConfigureEndpointsCallback((context, name, endpoint) =>
        {
            if (name != settings.Queue)
                return;
            endpoint.UseMessageRetry(r => r.Intervals(100, 500, 1000));
            if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
                (context.GetService<Microsoft.Extensions.Options.IOptions<Integration.Hosting.RabbitMqOptions>>()?.Value ?? new Integration.Hosting.RabbitMqOptions())
                    .ConfigureInstanceQueue(rabbit);
        });
        return bus;
    }

    static void HostQueue(IEndpointRegistrationConfigurator endpoint, string queue) => endpoint.Name = queue;

    /// <summary>
    /// Maps the hub at <paramref name="path"/> (<see cref="DefaultPath"/>). A connection without <c>?deviceId=</c> is
    /// refused with 400 and the reason.
    /// </summary>
    public static IEndpointRouteBuilder MapDeviceHub(this IEndpointRouteBuilder endpoints, string path = DefaultPath)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (endpoints.ServiceProvider.GetService<DeviceHubSettings>() is null)
            throw new InvalidOperationException("MapDeviceHub needs bus.AddDeviceHub(...) among the bus registrations first");
        endpoints.MapHub<DeviceHub>(path).Add(endpoint =>
        {
            var next = endpoint.RequestDelegate;
            if (next is null)
                return;
            endpoint.RequestDelegate = async http =>
            {
                if (DeviceHub.Problem(http.Request.Query[DeviceHub.DeviceIdParameter], http.Request.Query[DeviceHub.TypeParameter]) is { } problem)
                {
                    await Results.Problem(problem, statusCode: StatusCodes.Status400BadRequest, title: "Bad device connection").ExecuteAsync(http).ConfigureAwait(false);
                    return;
                }

                await next(http).ConfigureAwait(false);
            };
        });
        return endpoints;
    }
}
