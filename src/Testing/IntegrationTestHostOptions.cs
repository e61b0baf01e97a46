using Microsoft.Extensions.DependencyInjection;

namespace Integration.Testing;

/// <summary>How <see cref="IntegrationTestHost{TProgram}"/> starts the host under test.</summary>
public sealed class IntegrationTestHostOptions
{
    /// <summary>
    /// Extra configuration for the host (e.g. <c>["Billing:PaymentDue"] = "04:00:00"</c>); applied after the broker and
    /// database settings, so a key here wins.
    /// </summary>
    public IDictionary<string, string?> Settings { get; } = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);

    /// <summary>The hosting environment; <c>Testing</c> by default.</summary>
    public string Environment { get; set; } = "Testing";

    /// <summary>Polled until it answers 2xx before the host is handed to the test; <c>/health/ready</c> by default, null to skip.</summary>
    public string? ReadinessPath { get; set; } = "/health/ready";

    /// <summary>How long the host may take to become ready; 60 seconds by default.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Prefix of the virtual host's and the database's names (letters and digits, at most 12); <c>host</c> by default.</summary>
    public string? NamePrefix { get; set; }

    /// <summary>Replaces services of the host after its own registrations (<c>ConfigureTestServices</c>).</summary>
    public Action<IServiceCollection>? ConfigureServices { get; set; }

    /// <summary>The infrastructure to run on; <see cref="IntegrationInfrastructure.GetAsync"/> by default.</summary>
    public IntegrationInfrastructure? Infrastructure { get; set; }
}
