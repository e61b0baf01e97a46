using MassTransit;

namespace Integration.Testing;

/// <summary>A RabbitMQ virtual host that belongs to one test: no other test sees its exchanges or queues.</summary>
public sealed class TestBroker : IAsyncDisposable
{
    readonly IntegrationInfrastructure _infrastructure;

    internal TestBroker(IntegrationInfrastructure infrastructure, string virtualHost)
    {
        _infrastructure = infrastructure;
        VirtualHost = virtualHost;
    }

    internal IntegrationInfrastructure Infrastructure => _infrastructure;

    /// <summary>The virtual host's name.</summary>
    public string VirtualHost { get; }

    /// <summary>The broker's host name.</summary>
    public string Host => _infrastructure.RabbitMqUri.Host;
    /// <summary>The broker's AMQP port.</summary>
    public ushort Port => (ushort)(_infrastructure.RabbitMqUri.IsDefaultPort || _infrastructure.RabbitMqUri.Port <= 0 ? 5672 : _infrastructure.RabbitMqUri.Port);
    /// <summary>The broker user.</summary>
    public string Username => _infrastructure.RabbitMqUser;
    /// <summary>The broker user's password.</summary>
    public string Password => _infrastructure.RabbitMqPassword;

    /// <summary>AMQP URI of this virtual host, for RabbitMQ.Client.</summary>
    public Uri AmqpUri => new UriBuilder(_infrastructure.RabbitMqUri) { Path = "/" + Uri.EscapeDataString(VirtualHost) }.Uri;

    /// <summary>Points a MassTransit RabbitMQ bus at this virtual host.</summary>
    public void ConfigureHost(IRabbitMqBusFactoryConfigurator configurator)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        configurator.Host(Host, Port, VirtualHost, h =>
        {
            h.Username(Username);
            h.Password(Password);
        });
    }

    /// <summary>Settings in the host's configuration keys (<c>Integration:RabbitMq:*</c>).</summary>
    public IReadOnlyDictionary<string, string?> HostSettings() => new Dictionary<string, string?>
    {
        ["Integration:RabbitMq:Host"] = Host,
        ["Integration:RabbitMq:Port"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Integration:RabbitMq:VirtualHost"] = VirtualHost,
        ["Integration:RabbitMq:Username"] = Username,
        ["Integration:RabbitMq:Password"] = Password,
        ["Integration:RabbitMq:ManagementUri"] = _infrastructure.ManagementUri.ToString(),
    };

    /// <summary>
    /// Messages ready in a queue (not counting ones delivered and not yet acknowledged), read with an AMQP passive
    /// declare: exact at the moment of the call, unlike the management API's counts, which refresh every few seconds.
    /// Null when the queue does not exist.
    /// </summary>
    public async Task<long?> QueueMessageCountAsync(string queue)
    {
        var factory = new RabbitMQ.Client.ConnectionFactory { Uri = AmqpUri };
        await using var connection = await factory.CreateConnectionAsync("test-queue-depth").ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync().ConfigureAwait(false);
        try
        {
            return (await channel.QueueDeclarePassiveAsync(queue).ConfigureAwait(false)).MessageCount;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return null;
        }
    }

    /// <summary>Deletes the virtual host with every exchange and queue in it.</summary>
    public async ValueTask DisposeAsync() => await _infrastructure.DeleteVirtualHostAsync(VirtualHost).ConfigureAwait(false);
}
