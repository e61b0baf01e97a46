using Integration.Operations;

namespace Integration.Hubs;

/// <summary><c>devices.list</c> (Viewer): the devices connected to every host of the service (id, type, host, since).</summary>
/// <param name="Type">Only devices of this kind.</param>
/// <param name="Host">Only devices connected to this host instance.</param>
public sealed record ListDevices(string? Type = null, string? Host = null);

sealed class DeviceHubCommands(DeviceConnections connections) : IControlHandler<ListDevices>
{
    public Task<ControlResult> HandleAsync(ListDevices command, CancellationToken cancellationToken)
    {
        var devices = connections.All
            .Where(d => command.Type is null || string.Equals(d.Type, command.Type, StringComparison.OrdinalIgnoreCase))
            .Where(d => command.Host is null || string.Equals(d.Host, command.Host, StringComparison.OrdinalIgnoreCase))
            .ToList();
        var hosts = devices.Select(d => d.Host).Distinct(StringComparer.Ordinal).Count();
        return Task.FromResult(ControlResult.Ok($"{devices.Count} device connection(s) on {hosts} host(s)",
            new { host = connections.Host, devices = devices.Select(d => new { deviceId = d.DeviceId, type = d.Type, host = d.Host, since = d.Since }) }));
    }
}
