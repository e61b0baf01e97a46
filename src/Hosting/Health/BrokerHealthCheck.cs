using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Integration.Hosting.Health;

/// <summary>
/// Ready while a connection to the configured broker is open. MassTransit's own bus check only reflects receive
/// endpoints that have started, so a host with nothing consuming yet would look ready with the broker gone; this check
/// keeps one small connection (no channels) and reopens it when it drops, reporting the reason while it cannot.
/// Its data names the node the bus is connected to (<c>node</c>; with <c>Integration:RabbitMq:ClusterNodes</c> it moves
/// when that node dies) and the node of the check's own connection (<c>checkedNode</c>).
/// </summary>
sealed class BrokerHealthCheck(IOptions<RabbitMqOptions> options, IOptions<IntegrationHostOptions> host, BrokerNode busNode) : IHealthCheck, IAsyncDisposable
{
    readonly SemaphoreSlim _gate = new(1, 1);
    IConnection? _connection;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var settings = options.Value;
        var where = settings.ClusterNodes.Count == 0
            ? $"{settings.Host}:{settings.Port}/{settings.VirtualHost}"
            : $"{string.Join(",", settings.EffectiveNodes.Select(n => $"{n.Host}:{n.Port}"))}/{settings.VirtualHost}";
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is { IsOpen: true })
                return await ConnectedAsync(_connection, settings, cancellationToken).ConfigureAwait(false);

            if (_connection is not null)
            {
                await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = null;
            }

            _connection = await RabbitMqConnections.ConnectAsync(settings, $"{host.Value.ServiceName}-health", cancellationToken, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
            return await ConnectedAsync(_connection, settings, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var reason = exception.InnerException?.Message ?? exception.Message;
            return new HealthCheckResult(context.Registration.FailureStatus, $"RabbitMQ unreachable at {where}: {reason}", exception);
        }
        finally
        {
            _gate.Release();
        }
    }

    async Task<HealthCheckResult> ConnectedAsync(IConnection connection, RabbitMqOptions settings, CancellationToken cancellationToken)
    {
        var checkedNode = $"{connection.Endpoint.HostName}:{connection.Endpoint.Port}";
        var node = await busNode.ConnectedAsync(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
        var data = new Dictionary<string, object>
        {
            ["node"] = node ?? "not connected",
            ["checkedNode"] = checkedNode,
            ["virtualHost"] = settings.VirtualHost,
            ["queueType"] = settings.QueueType.ToString(),
        };
        return HealthCheckResult.Healthy(node is null
            ? $"Connected to RabbitMQ at {checkedNode}/{settings.VirtualHost} (the bus is not connected yet)"
            : $"Connected to RabbitMQ at {node}/{settings.VirtualHost}", data);
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
            await _connection.DisposeAsync().ConfigureAwait(false);
        _gate.Dispose();
    }
}
