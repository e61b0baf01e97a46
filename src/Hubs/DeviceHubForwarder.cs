using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.AspNetCore.SignalR;

namespace Integration.Hubs;

/// <summary>
/// Takes a declared event from this host's queue and sends it to the connections this host holds: the named device's
/// group, or every connection for a broadcast. A device connected elsewhere gets it from its own host's copy.
/// </summary>
sealed class DeviceHubForwarder<T>(IHubContext<DeviceHub> hub, DeviceRoute<T> route, DeviceHubMetrics metrics) : IConsumer<T>
    where T : class
{
    public async Task Consume(ConsumeContext<T> context)
    {
        if (route.IsBroadcast)
        {
            await hub.Clients.All.SendAsync(route.Method, context.Message, context.CancellationToken).ConfigureAwait(false);
            metrics.Delivered(route, "broadcast");
            return;
        }

        var deviceId = route.DeviceOf(context.Message);
        if (string.IsNullOrWhiteSpace(deviceId))
            throw new InvalidOperationException($"Device hub: {typeof(T).Name} names no device (the ToDevice<{typeof(T).Name}> selector returned '{deviceId}')");
        await hub.Clients.Group(DeviceHub.GroupOf(deviceId)).SendAsync(route.Method, context.Message, context.CancellationToken).ConfigureAwait(false);
        metrics.Delivered(route, "device");
    }
}

/// <summary>The hub's meter: events handed to SignalR, connections held by this host.</summary>
sealed class DeviceHubMetrics
{
    public const string MeterName = "Integration.Hubs";
    readonly Counter<long> _delivered;

    public DeviceHubMetrics(IMeterFactory meters, DeviceConnections connections)
    {
        var meter = meters.Create(MeterName);
        _delivered = meter.CreateCounter<long>("integration.hub.deliveries", "{message}",
            "Events this host handed to its SignalR connections (label kind: device or broadcast)");
        meter.CreateObservableGauge("integration.hub.connections", () => connections.Local.Count, "{connection}", "Device connections held by this host");
    }

    public void Delivered(DeviceRoute route, string kind) =>
        _delivered.Add(1, new KeyValuePair<string, object?>("message", route.MessageType.Name), new KeyValuePair<string, object?>("kind", kind));
}
