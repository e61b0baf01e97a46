using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Hubs;

/// <summary>
/// A host's connected devices, published on every change and every presence interval so that any host can list them
/// (<c>devices.list</c>). Wire names are fixed whatever the CLR namespace.
/// </summary>
/// <param name="Host">The announcing host instance.</param>
/// <param name="Devices">Its connections.</param>
/// <param name="Leaving">True when the host is stopping: forget it now.</param>
/// <param name="At">When the snapshot was taken (older snapshots never replace newer ones).</param>
[MessageUrn("integration:device-hub-presence")]
[EntityName("integration.device-hub-presence")]
public sealed record DeviceHubPresence(string Host, IReadOnlyList<DeviceConnection> Devices, bool Leaving, DateTimeOffset At);

/// <summary>Published by a host as it starts: every other host announces its devices again.</summary>
/// <param name="Host">The host asking.</param>
[MessageUrn("integration:device-hub-presence-request")]
[EntityName("integration.device-hub-presence-request")]
public sealed record DeviceHubPresenceRequest(string Host);

/// <summary>Keeps the other hosts' device lists, on this host's queue.</summary>
sealed class DevicePresenceConsumer(DeviceConnections connections) : IConsumer<DeviceHubPresence>, IConsumer<DeviceHubPresenceRequest>
{
    public Task Consume(ConsumeContext<DeviceHubPresence> context)
    {
        connections.Heard(context.Message);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<DeviceHubPresenceRequest> context)
    {
        if (!string.Equals(context.Message.Host, connections.Host, StringComparison.Ordinal))
            connections.AnnounceSoon();
        return Task.CompletedTask;
    }
}

/// <summary>Announces this host's devices: at start (asking the others to do the same), on every change, every interval, and as it stops.</summary>
sealed partial class DevicePresencePublisher(IBus bus, DeviceConnections connections, DeviceHubSettings settings,
    ILogger<DevicePresencePublisher> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var asked = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (!asked)
                {
                    await bus.Publish(new DeviceHubPresenceRequest(connections.Host), stoppingToken).ConfigureAwait(false);
                    asked = true;
                }

                await bus.Publish(connections.Snapshot(leaving: false), stoppingToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
            {
                LogPublishFailed(logger, exception, connections.Host);
            }

            using var interval = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            interval.CancelAfter(asked ? settings.PresenceInterval : TimeSpan.FromSeconds(1));
            try
            {
                await connections.Changes.ReadAsync(interval.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
            {
                // The interval passed with no change: announce again so the others keep this host in their lists.
            }
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await bus.Publish(connections.Snapshot(leaving: true), timeout.Token).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            // Best effort: the others drop this host after three presence intervals anyway.
            LogPublishFailed(logger, exception, connections.Host);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Device hub {Host}: could not announce its connected devices; retrying at the next interval")]
    static partial void LogPublishFailed(ILogger logger, Exception exception, string host);
}
