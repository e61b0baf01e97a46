using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Hubs;

/// <summary>
/// Declares which bus events the device hub delivers, and to whom: <see cref="ToDevice{T}"/> to the device an event
/// names, <see cref="Broadcast{T}"/> to every connected device. The order of the calls does not matter; each event type
/// is declared once.
/// </summary>
public sealed class DeviceHubConfigurator
{
    readonly List<DeviceRoute> _routes = [];

    internal DeviceHubConfigurator()
    {
    }

    /// <summary>
    /// First part of the per-host queue's name, <c>{QueuePrefix}-{instance}</c> (non-durable, auto-delete); <c>device-hub</c>
    /// by default. Every host of the service has one, bound to the exchanges of the declared events.
    /// </summary>
    public string QueuePrefix { get; set; } = "device-hub";

    /// <summary>
    /// How often a host re-announces its connected devices to the other hosts (the control bus lists every host's
    /// devices); a host not heard from for three intervals is dropped from the list. 30 seconds by default.
    /// </summary>
    public TimeSpan PresenceInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Delivers every <typeparamref name="T"/> published on the bus to the device whose id <paramref name="deviceId"/>
    /// returns, on whichever host it is connected. An event that names no device goes to the queue's <c>_error</c> queue.
    /// </summary>
    /// <param name="deviceId">The device the event is for, e.g. <c>m =&gt; m.DeviceId</c>.</param>
    /// <param name="method">The client method the device listens on (<c>connection.On("...")</c>); the event's type name by default.</param>
    public DeviceHubConfigurator ToDevice<T>(Func<T, string?> deviceId, string? method = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(deviceId);
        _routes.Add(new DeviceRoute<T>(method ?? typeof(T).Name, deviceId));
        return this;
    }

    /// <summary>Delivers every <typeparamref name="T"/> published on the bus to every device connected to any host.</summary>
    /// <param name="method">The client method the devices listen on; the event's type name by default.</param>
    public DeviceHubConfigurator Broadcast<T>(string? method = null)
        where T : class
    {
        _routes.Add(new DeviceRoute<T>(method ?? typeof(T).Name, null));
        return this;
    }

    internal IReadOnlyList<DeviceRoute> Routes => _routes;

    internal IEnumerable<string> Validate()
    {
        if (_routes.Count == 0)
            yield return "AddDeviceHub: declare at least one event with ToDevice<T>(...) or Broadcast<T>()";
        foreach (var duplicate in _routes.GroupBy(r => r.MessageType).Where(g => g.Count() > 1))
            yield return $"AddDeviceHub: {duplicate.Key.Name} is declared {duplicate.Count()} times; declare each event once";
        foreach (var route in _routes.Where(r => string.IsNullOrWhiteSpace(r.Method)))
            yield return $"AddDeviceHub: the client method of {route.MessageType.Name} must not be empty";
        if (string.IsNullOrWhiteSpace(QueuePrefix) || QueuePrefix.Length > 100)
            yield return "AddDeviceHub: QueuePrefix is required, at most 100 characters";
        if (PresenceInterval < TimeSpan.FromSeconds(1) || PresenceInterval > TimeSpan.FromHours(1))
            yield return $"AddDeviceHub: PresenceInterval must be between 1 second and 1 hour, not {PresenceInterval}";
    }
}

/// <summary>One declared event: where it goes.</summary>
abstract class DeviceRoute(string method)
{
    public string Method { get; } = method;

    public abstract Type MessageType { get; }

    public abstract bool IsBroadcast { get; }

    public abstract void Register(IBusRegistrationConfigurator bus, Action<IEndpointRegistrationConfigurator> endpoint);
}

sealed class DeviceRoute<T>(string method, Func<T, string?>? deviceId) : DeviceRoute(method)
    where T : class
{
    public override Type MessageType => typeof(T);

    public override bool IsBroadcast => deviceId is null;

    /// <summary>The device the message is for; null for a broadcast.</summary>
    public string? DeviceOf(T message) => deviceId?.Invoke(message);

    public override void Register(IBusRegistrationConfigurator bus, Action<IEndpointRegistrationConfigurator> endpoint)
    {
        bus.AddSingleton(this);
        bus.AddConsumer<DeviceHubForwarder<T>>().Endpoint(endpoint);
    }
}
