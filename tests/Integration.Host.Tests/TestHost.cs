using Integration.Testing;

namespace Integration.Host.Tests;

/// <summary>The real host in-process on a test's own vhost and database (<see cref="IntegrationTestHost{TProgram}"/>), with probes off.</summary>
public static class TestHost
{
    /// <summary>Starts the host with <paramref name="settings"/> on top of the defaults; <paramref name="configure"/> adjusts the rest.</summary>
    public static Task<IntegrationTestHost<Program>> StartAsync(string prefix, IDictionary<string, string?>? settings = null,
        Action<IntegrationTestHostOptions>? configure = null) =>
        IntegrationTestHost<Program>.StartAsync(options =>
        {
            options.NamePrefix = prefix;
            // Test messages would add traffic other specs do not expect; specs that want them turn them on.
            options.Settings["Integration:Probes:Enabled"] = "false";
            foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
                options.Settings[key] = value;
            configure?.Invoke(options);
        });
}
