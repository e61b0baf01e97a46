using System.Collections.Concurrent;
using System.Threading.Channels;

namespace Integration.Hubs;

/// <summary>A device connected to the hub: which device, what kind, on which host, since when.</summary>
/// <param name="DeviceId">The device's id (<c>?deviceId=</c>).</param>
/// <param name="Type">Its kind (<c>?type=</c>), when it said.</param>
/// <param name="Host">The host instance holding the connection.</param>
/// <param name="Since">When it connected.</param>
public sealed record DeviceConnection(string DeviceId, string? Type, string Host, DateTimeOffset Since);

/// <summary>
/// The devices connected to this host (authoritative) and to the other hosts of the service (as they last announced
/// them over the bus). Nothing is stored: after a restart the list fills again as devices reconnect.
/// </summary>
public sealed class DeviceConnections
{
    readonly ConcurrentDictionary<string, DeviceConnection> _local = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, Peer> _peers = new(StringComparer.Ordinal);
    readonly Channel<bool> _changes = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    readonly TimeProvider _time;
    readonly TimeSpan _peerExpiry;

    internal DeviceConnections(DeviceHubSettings settings, TimeProvider time)
    {
        Host = settings.Host;
        _time = time;
        _peerExpiry = settings.PresenceInterval * 3;
    }

    /// <summary>This host instance's name, as it appears in <see cref="DeviceConnection.Host"/>.</summary>
    public string Host { get; }

    /// <summary>The devices connected to this host, one entry per connection.</summary>
    public IReadOnlyList<DeviceConnection> Local => [.. _local.Values.OrderBy(c => c.DeviceId, StringComparer.Ordinal).ThenBy(c => c.Since)];

    /// <summary>The devices connected to any host of the service: this host's, and the others' as last announced.</summary>
    public IReadOnlyList<DeviceConnection> All
    {
        get
        {
            var now = _time.GetUtcNow();
            var peers = _peers.Values.Where(p => now - p.HeardAt <= _peerExpiry).SelectMany(p => p.Devices);
            return [.. _local.Values.Concat(peers).OrderBy(c => c.DeviceId, StringComparer.Ordinal).ThenBy(c => c.Host, StringComparer.Ordinal)];
        }
    }

    internal ChannelReader<bool> Changes => _changes.Reader;

    internal void Connected(string connectionId, string deviceId, string? type)
    {
        _local[connectionId] = new DeviceConnection(deviceId, type, Host, _time.GetUtcNow());
        _changes.Writer.TryWrite(true);
    }

    internal void Disconnected(string connectionId)
    {
        if (_local.TryRemove(connectionId, out _))
            _changes.Writer.TryWrite(true);
    }

    /// <summary>Asks for this host's devices to be announced again (another host has just started).</summary>
    internal void AnnounceSoon() => _changes.Writer.TryWrite(true);

    internal void Heard(DeviceHubPresence presence)
    {
        if (string.Equals(presence.Host, Host, StringComparison.Ordinal))
            return;
        if (presence.Leaving)
        {
            _peers.TryRemove(presence.Host, out _);
            return;
        }

        _peers.AddOrUpdate(presence.Host, _ => new Peer(presence.Devices, _time.GetUtcNow(), presence.At),
            (_, known) => known.AnnouncedAt > presence.At ? known : new Peer(presence.Devices, _time.GetUtcNow(), presence.At));
    }

    internal DeviceHubPresence Snapshot(bool leaving) => new(Host, leaving ? [] : [.. _local.Values], leaving, _time.GetUtcNow());

    sealed record Peer(IReadOnlyList<DeviceConnection> Devices, DateTimeOffset HeardAt, DateTimeOffset AnnouncedAt);
}

/// <summary>What <see cref="DeviceHubRegistration.AddDeviceHub"/> decided for this host.</summary>
sealed record DeviceHubSettings(string Queue, string Host, TimeSpan PresenceInterval, IReadOnlyList<DeviceRoute> Routes);
