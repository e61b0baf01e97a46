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
}
