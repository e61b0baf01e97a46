using System.ComponentModel.DataAnnotations;

namespace Integration.Host.Configuration;

/// <summary>Host-wide settings, bound from <c>Integration:Host</c>.</summary>
public sealed class HostSettings
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Host";

    /// <summary>Service name in traces, metrics and the RabbitMQ connection name.</summary>
    [Required] public string ServiceName { get; set; } = "integration-host";

    /// <summary>How long a graceful stop waits for in-flight messages.</summary>
    [Range(1, 3600)] public int ShutdownTimeoutSeconds { get; set; } = 30;

    /// <summary>Largest HTTP request body accepted, in bytes (default 1 MiB); larger requests get 413.</summary>
    [Range(1024, 1024L * 1024 * 1024)] public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Write logs as JSON lines (for log shippers) instead of single-line text.</summary>
    public bool JsonLogs { get; set; }
}
