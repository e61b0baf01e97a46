using Microsoft.AspNetCore.SignalR;

namespace Integration.Hubs;

/// <summary>
/// The SignalR hub devices connect to (<c>/hubs/devices?deviceId=...&amp;type=...</c>, mapped by
/// <see cref="DeviceHubRegistration.MapDeviceHub"/>). A connection joins its device's group, so events declared with
/// <see cref="DeviceHubConfigurator.ToDevice{T}"/> reach every connection of that device on this host; broadcasts reach
/// every connection. Devices only listen: the hub has no methods to call.
/// </summary>
public sealed class DeviceHub : Hub
{
    /// <summary>Query parameter naming the device (required, at most 200 characters).</summary>
    public const string DeviceIdParameter = "deviceId";

    /// <summary>Query parameter naming the kind of device (optional, at most 100 characters), e.g. <c>truck</c>.</summary>
    public const string TypeParameter = "type";

    readonly DeviceConnections _connections;

    /// <summary>Created by SignalR for each call.</summary>
    public DeviceHub(DeviceConnections connections) => _connections = connections;

    /// <summary>The group of a device's connections.</summary>
    public static string GroupOf(string deviceId) => "device:" + deviceId;

    /// <inheritdoc />
    public override async Task OnConnectedAsync()
    {
        var query = Context.GetHttpContext()?.Request.Query;
        var deviceId = query?[DeviceIdParameter].ToString();
        var type = query?[TypeParameter].ToString();
        if (Problem(deviceId, type) is { } problem)
            throw new HubException(problem);
        await Groups.AddToGroupAsync(Context.ConnectionId, GroupOf(deviceId!), Context.ConnectionAborted).ConfigureAwait(false);
        _connections.Connected(Context.ConnectionId, deviceId!, string.IsNullOrWhiteSpace(type) ? null : type);
        await base.OnConnectedAsync().ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override Task OnDisconnectedAsync(Exception? exception)
    {
        _connections.Disconnected(Context.ConnectionId);
        return base.OnDisconnectedAsync(exception);
    }

    /// <summary>Why a connection with these query values is refused; null when it is fine.</summary>
    internal static string? Problem(string? deviceId, string? type)
    {
        if (string.IsNullOrWhiteSpace(deviceId) || deviceId.Length > 200)
            return $"Query parameter '{DeviceIdParameter}' is required, at most 200 characters (connect to /hubs/devices?{DeviceIdParameter}=truck-7)";
        if (type is { Length: > 100 })
            return $"Query parameter '{TypeParameter}' must be at most 100 characters";
        return null;
    }
}
