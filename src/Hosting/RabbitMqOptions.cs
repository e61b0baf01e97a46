using System.ComponentModel.DataAnnotations;

namespace Integration.Hosting;

/// <summary>Broker connection, bound from <c>Integration:RabbitMq</c> (environment: <c>Integration__RabbitMq__Host</c>, ...).</summary>
public sealed class RabbitMqOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:RabbitMq";

    /// <summary>Broker host name.</summary>
    [Required] public string Host { get; set; } = "";

    /// <summary>AMQP port (5672, or 5671 with TLS).</summary>
    [Range(1, 65535)] public int Port { get; set; } = 5672;

    /// <summary>Virtual host.</summary>
    [Required] public string VirtualHost { get; set; } = "/";

    /// <summary>User name.</summary>
    [Required] public string Username { get; set; } = "";

    /// <summary>Password. Never logged.</summary>
    [Required] public string Password { get; set; } = "";

    /// <summary>Connect with TLS.</summary>
    public bool UseTls { get; set; }

    /// <summary>Server name expected in the broker's certificate (defaults to <see cref="Host"/>).</summary>
    public string? TlsServerName { get; set; }

    /// <summary>Client certificate (PKCS#12 / .pfx) for brokers that authenticate clients by certificate (mutual TLS); needs <see cref="UseTls"/>.</summary>
    public string? TlsClientCertificatePath { get; set; }

    /// <summary>Passphrase of <see cref="TlsClientCertificatePath"/>. Never logged.</summary>
    public string? TlsClientCertificatePassphrase { get; set; }

    /// <summary>Rules the annotations cannot express, each naming its full key.</summary>
    internal static IEnumerable<string> Validate(RabbitMqOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.TlsClientCertificatePath))
            yield break;
        if (!options.UseTls)
            yield return $"{Section}:TlsClientCertificatePath is set but {Section}:UseTls is false: a client certificate needs TLS";
        else if (!File.Exists(options.TlsClientCertificatePath))
            yield return $"{Section}:TlsClientCertificatePath: no file at '{options.TlsClientCertificatePath}'";
    }

    /// <summary>Messages each consumer may hold unacknowledged.</summary>
    [Range(1, 65535)] public int PrefetchCount { get; set; } = 32;

    /// <summary>Management API base address (dead-letter listing); defaults to <c>http://{Host}:15672/</c>.</summary>
    public Uri? ManagementUri { get; set; }

    /// <summary>Heartbeat interval in seconds.</summary>
    [Range(1, 600)] public int HeartbeatSeconds { get; set; } = 10;

    /// <summary>The management API base address in force.</summary>
    public Uri EffectiveManagementUri => ManagementUri ?? new UriBuilder(UseTls ? "https" : "http", Host, 15672).Uri;
}
