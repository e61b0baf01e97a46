using MassTransit;
using MassTransit.RabbitMqTransport;
using MassTransit.RabbitMqTransport.Configuration;
using MassTransit.Transports;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Hosting;

/// <summary>
/// Which RabbitMQ node the bus is connected to (<c>host:port</c>), for the readiness data (<c>/health/ready</c>, key
/// <c>node</c>) and the dashboard. With <c>Integration:RabbitMq:ClusterNodes</c> it changes when the host fails over.
/// Registered by <see cref="IntegrationDefaults.AddIntegrationDefaults{TDbContext}"/>.
/// </summary>
public sealed class BrokerNode
{
    readonly IServiceProvider _services;

    /// <summary>Reads the node through the bus in <paramref name="services"/>.</summary>
    public BrokerNode(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        _services = services;
    }

    /// <summary>
    /// The node of the bus's open connection, or <see langword="null"/> when the bus has none within <paramref name="timeout"/>
    /// (broker down, bus not started, reconnecting).
    /// </summary>
    public async Task<string?> ConnectedAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (_services.GetService<IBusInstance>()?.HostConfiguration is not IRabbitMqHostConfiguration rabbit)
            return null;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cancel.CancelAfter(timeout);
        string? node = null;
        try
        {
            await rabbit.ConnectionContextSupervisor.Send(Pipe.Execute<ConnectionContext>(context =>
            {
                if (context.Connection.IsOpen)
                    node = $"{context.Connection.Endpoint.HostName}:{context.Connection.Endpoint.Port}";
            }), cancel.Token).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is OperationCanceledException or MassTransitException or RabbitMqConnectionException or ObjectDisposedException or InvalidOperationException)
        {
            return null;
        }

        return node;
    }
}
