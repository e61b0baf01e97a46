using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Integration.Hosting.Health;

/// <summary>
/// Ready while a connection to the configured broker is open. MassTransit's own bus check only reflects receive
/// endpoints that have started, so a host with nothing consuming yet would look ready with the broker gone; this check
/// keeps one small connection (no channels) and reopens it when it drops, reporting the reason while it cannot.
/// </summary>
sealed class BrokerHealthCheck(IOptions<RabbitMqOptions> options, IOptions<IntegrationHostOptions> host) : IHealthCheck, IAsyncDisposable
{
    readonly SemaphoreSlim _gate = new(1, 1);
    IConnection? _connection;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var settings = options.Value;
        var where = $"{settings.Host}:{settings.Port}/{settings.VirtualHost}";
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is { IsOpen: true })
                return HealthCheckResult.Healthy($"Connected to RabbitMQ at {where}");

            if (_connection is not null)
            {
                await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = null;
            }

            _connection = await RabbitMqConnections.Factory(settings, TimeSpan.FromSeconds(3)).CreateConnectionAsync($"{host.Value.ServiceName}-health", cancellationToken).ConfigureAwait(false);
            return HealthCheckResult.Healthy($"Connected to RabbitMQ at {where}");
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

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
            await _connection.DisposeAsync().ConfigureAwait(false);
        _gate.Dispose();
    }
}
