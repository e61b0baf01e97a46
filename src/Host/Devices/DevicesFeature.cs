using Integration.Host.Contracts;
using Integration.Host.Features;
using Integration.Hubs;
using MassTransit;

namespace Integration.Host.Devices;

/// <summary>
/// The device hub at <c>/hubs/devices?deviceId=...&amp;type=...</c>: an order's <see cref="OrderStatusChanged"/> (published
/// by the fulfillment saga on every state change) goes to the device that placed the order, every
/// <see cref="InventoryUpdated"/> to every device, on whichever host each device is connected.
/// <c>devices.list</c> on the control bus lists the connected devices of every host.
/// </summary>
public sealed class DevicesFeature : IHostFeature
{
    /// <inheritdoc />
    public string Name => "devices";

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.AddDeviceHub(hub => hub
            .ToDevice<OrderStatusChanged>(m => m.DeviceId)
            .Broadcast<InventoryUpdated>());
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints) => endpoints.MapDeviceHub();
}
