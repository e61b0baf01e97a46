using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace Integration.Operations;

/// <summary>
/// A configuration source added last, so its <c>Logging:LogLevel:*</c> keys win over appsettings; changing one reloads
/// the logging filters at once, in this process only (each host instance applies the control command itself).
/// </summary>
sealed class LogLevelOverrides : ConfigurationProvider, IConfigurationSource
{
    /// <inheritdoc />
    public IConfigurationProvider Build(IConfigurationBuilder builder) => this;

    /// <summary>Sets the minimum level of <paramref name="category"/> (<c>Default</c> for all).</summary>
    public void Set(string category, LogLevel level)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(category);
        Data[$"Logging:LogLevel:{category}"] = level.ToString();
        OnReload();
    }

    /// <summary>The overrides in force, by category.</summary>
    public IReadOnlyDictionary<string, string> Current =>
        Data.Where(d => d.Value is not null).ToDictionary(d => d.Key["Logging:LogLevel:".Length..], d => d.Value!, StringComparer.OrdinalIgnoreCase);
}
