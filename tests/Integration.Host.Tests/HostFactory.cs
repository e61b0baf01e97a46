using Integration.Testing;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;

namespace Integration.Host.Tests;

/// <summary>Runs the real host in-process against a test's own virtual host and database.</summary>
public sealed class HostFactory(IReadOnlyDictionary<string, string?> settings) : WebApplicationFactory<Program>
{
    /// <summary>A host wired to <paramref name="broker"/> and <paramref name="database"/>, plus extra settings.</summary>
    public static HostFactory For(TestBroker broker, TestDatabase database, IDictionary<string, string?>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(database);
        var settings = new Dictionary<string, string?>(broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            // Test messages would add traffic other specs do not expect; specs that want them turn them on.
            ["Integration:Probes:Enabled"] = "false",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
            settings[key] = value;
        return new HostFactory(settings);
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.ConfigureAppConfiguration(configuration => configuration.AddInMemoryCollection(settings));
    }
}
