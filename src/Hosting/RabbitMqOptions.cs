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

    /// <summary>
    /// The type of every queue the framework declares: <see cref="RabbitMqQueueType.Classic"/> (default) or
    /// <see cref="RabbitMqQueueType.Quorum"/> (replicated over the cluster's nodes; see docs/scaling.md). A queue's type is
    /// fixed when it is first declared: switching an existing virtual host needs its queues deleted (or a new virtual host).
    /// </summary>
    public RabbitMqQueueType QueueType { get; set; } = RabbitMqQueueType.Classic;

    /// <summary>
    /// Quorum queues only: how many times the broker redelivers a message (consumer crashes, lost connections) before it
    /// gives up on it (<c>x-delivery-limit</c>). Failures inside the host never count: MassTransit retries, then moves the
    /// message to <c>&lt;queue&gt;_error</c> with the reason. High by default, so the broker never drops a message that a
    /// crashing host keeps taking (RabbitMQ 4 would otherwise apply its own default of 20).
    /// </summary>
    [Range(1, int.MaxValue)] public int QuorumDeliveryLimit { get; set; } = 10_000;

    /// <summary>
    /// The nodes of a RabbitMQ cluster, each <c>host:port</c> (or <c>host</c> for port <see cref="Port"/>): the host connects
    /// to the first reachable one and moves to another when its node dies. Empty: <see cref="Host"/> and <see cref="Port"/> only.
    /// </summary>
    public IList<string> ClusterNodes { get; } = [];

    /// <summary>The nodes in force: <see cref="ClusterNodes"/>, or <see cref="Host"/>:<see cref="Port"/> alone.</summary>
    public IReadOnlyList<(string Host, int Port)> EffectiveNodes =>
        ClusterNodes.Count == 0 ? [(Host, Port)] : [.. ClusterNodes.Select(n => ParseNode(n, Port) ?? (n, Port))];

    /// <summary>
    /// The arguments of a durable queue declared outside MassTransit (RabbitMQ.Client), so it has the type of every other
    /// queue: <c>x-queue-type</c> and <c>x-delivery-limit</c> for quorum queues, none for classic ones.
    /// </summary>
    public IDictionary<string, object?> DurableQueueArguments() =>
        QueueType == RabbitMqQueueType.Quorum
            ? new Dictionary<string, object?> { ["x-queue-type"] = "quorum", ["x-delivery-limit"] = QuorumDeliveryLimit }
            : new Dictionary<string, object?>();

    /// <summary>How long a per-instance quorum queue (control bus, probes) outlives its last use (<c>x-expires</c>).</summary>
    public static readonly TimeSpan InstanceQueueExpiration = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Makes <paramref name="endpoint"/> a per-instance queue (one host's own: control bus, device hub): auto-delete and
    /// transient on classic queues; with <see cref="RabbitMqQueueType.Quorum"/>, which can be neither, durable and expiring
    /// after <see cref="InstanceQueueExpiration"/> unused, so the queue of a stopped instance goes away.
    /// </summary>
    public void ConfigureInstanceQueue(MassTransit.IRabbitMqReceiveEndpointConfigurator endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        if (QueueType == RabbitMqQueueType.Quorum)
        {
            endpoint.Durable = true;
            endpoint.AutoDelete = false;
            endpoint.QueueExpiration = InstanceQueueExpiration;
        }
        else
        {
            endpoint.AutoDelete = true;
            endpoint.Durable = false;
        }
    }

    /// <summary>
    /// The arguments of a per-instance queue declared outside MassTransit: none for classic queues (declare it exclusive and
    /// auto-delete); for quorum queues, which cannot be either, the quorum arguments plus <c>x-expires</c>
    /// (<see cref="InstanceQueueExpiration"/>), so the queue of a stopped instance goes away.
    /// </summary>
    public IDictionary<string, object?> InstanceQueueArguments()
    {
        var arguments = DurableQueueArguments();
        if (QueueType == RabbitMqQueueType.Quorum)
            arguments["x-expires"] = (long)InstanceQueueExpiration.TotalMilliseconds;
        return arguments;
    }

    internal static (string Host, int Port)? ParseNode(string node, int defaultPort)
    {
        if (string.IsNullOrWhiteSpace(node))
            return null;
        var colon = node.LastIndexOf(':');
        if (colon < 0)
            return (node.Trim(), defaultPort);
        var host = node[..colon].Trim();
        return host.Length > 0 && int.TryParse(node[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535
            ? (host, port)
            : null;
    }

    /// <summary>Rules the annotations cannot express, each naming its full key.</summary>
    internal static IEnumerable<string> Validate(RabbitMqOptions options)
    {
        if (!Enum.IsDefined(options.QueueType))
            yield return $"{Section}:QueueType: '{options.QueueType}' is not a queue type; use Classic or Quorum (environment: Integration__RabbitMq__QueueType)";
        for (var i = 0; i < options.ClusterNodes.Count; i++)
        {
            if (ParseNode(options.ClusterNodes[i], options.Port) is null)
                yield return $"{Section}:ClusterNodes:{i}: '{options.ClusterNodes[i]}' is not host:port (a host name and a port from 1 to 65535; environment: Integration__RabbitMq__ClusterNodes__{i})";
        }

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
