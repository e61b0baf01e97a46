using System.ComponentModel.DataAnnotations;
using System.Text;
using Microsoft.Extensions.Configuration;

namespace Integration.Hosting;

/// <summary>Host-wide settings, bound from <c>Integration:Host</c>.</summary>
public sealed class IntegrationHostOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Host";

    /// <summary>
    /// Service name in traces, metrics and the RabbitMQ connection name, and the root of the names derived from it (the
    /// durable scheduler's queue, the control queue). Default: the application name in kebab case.
    /// </summary>
    [Required] public string ServiceName { get; set; } = "";

    /// <summary>How long a graceful stop waits for in-flight messages.</summary>
    [Range(1, 3600)] public int ShutdownTimeoutSeconds { get; set; } = 30;

    /// <summary>Largest HTTP request body accepted, in bytes (default 1 MiB); larger requests get 413.</summary>
    [Range(1024, 1024L * 1024 * 1024)] public long MaxRequestBodyBytes { get; set; } = 1024 * 1024;

    /// <summary>Write logs as JSON lines (for log shippers) instead of single-line text.</summary>
    public bool JsonLogs { get; set; }

    /// <summary>The service name used when none is configured: <paramref name="applicationName"/> in kebab case (<c>Acme.Worker</c> → <c>acme-worker</c>).</summary>
    public static string DefaultServiceName(string applicationName)
    {
        ArgumentNullException.ThrowIfNull(applicationName);
        var name = new StringBuilder(applicationName.Length + 8);
        for (var i = 0; i < applicationName.Length; i++)
        {
            var c = applicationName[i];
            if (char.IsUpper(c) && i > 0 && char.IsLower(applicationName[i - 1]))
                name.Append('-');
            name.Append(char.IsLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-');
        }

        var text = string.Join('-', name.ToString().Split('-', StringSplitOptions.RemoveEmptyEntries));
        return text.Length == 0 ? "integration-host" : text;
    }

    /// <summary>The settings as configured now, for registration-time decisions (logging format, shutdown timeouts).</summary>
    internal static IntegrationHostOptions Read(IConfiguration configuration, string applicationName)
    {
        var options = configuration.GetSection(Section).Get<IntegrationHostOptions>() ?? new IntegrationHostOptions();
        if (string.IsNullOrWhiteSpace(options.ServiceName))
            options.ServiceName = DefaultServiceName(applicationName);
        return options;
    }
}
