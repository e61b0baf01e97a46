using System.Security.Authentication;
using RabbitMQ.Client;

namespace Integration.Hosting;

/// <summary>RabbitMQ.Client connections with the host's broker settings, for the parts that talk AMQP directly (health, dead letters, the message store, probes).</summary>
public static class RabbitMqConnections
{
    /// <summary>A connection factory for <paramref name="settings"/> (TLS included); no automatic recovery: callers reconnect.</summary>
    public static ConnectionFactory Factory(RabbitMqOptions settings, TimeSpan? connectTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var factory = new ConnectionFactory
        {
            HostName = settings.Host,
            Port = settings.Port,
            VirtualHost = settings.VirtualHost,
            UserName = settings.Username,
            Password = settings.Password,
            RequestedHeartbeat = TimeSpan.FromSeconds(settings.HeartbeatSeconds),
            RequestedConnectionTimeout = connectTimeout ?? TimeSpan.FromSeconds(10),
            AutomaticRecoveryEnabled = false,
        };
        if (settings.UseTls)
        {
            factory.Ssl = new SslOption
            {
                Enabled = true,
                ServerName = settings.TlsServerName ?? settings.Host,
                Version = SslProtocols.Tls12 | SslProtocols.Tls13,
                CertPath = settings.TlsClientCertificatePath ?? "",
                CertPassphrase = settings.TlsClientCertificatePassphrase ?? "",
            };
        }

        return factory;
    }

    /// <summary>
    /// Opens a connection named <paramref name="name"/> to the first reachable node of <see cref="RabbitMqOptions.EffectiveNodes"/>
    /// (<c>Integration:RabbitMq:ClusterNodes</c>, else <c>Host</c>:<c>Port</c>); <see cref="IConnection.Endpoint"/> tells which.
    /// </summary>
    public static Task<IConnection> ConnectAsync(RabbitMqOptions settings, string name, CancellationToken cancellationToken = default, TimeSpan? connectTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var factory = Factory(settings, connectTimeout);
        var endpoints = settings.EffectiveNodes.Select(n => new AmqpTcpEndpoint(n.Host, n.Port, new SslOption
        {
            Enabled = factory.Ssl.Enabled,
            ServerName = settings.ClusterNodes.Count == 0 ? factory.Ssl.ServerName : settings.TlsServerName ?? n.Host,
            Version = factory.Ssl.Version,
            CertPath = factory.Ssl.CertPath,
            CertPassphrase = factory.Ssl.CertPassphrase,
        })).ToList();
        return factory.CreateConnectionAsync(endpoints, name, cancellationToken);
    }
}
