using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>The caller of a control command, once its key was checked.</summary>
/// <param name="Name">Key name (the audit actor).</param>
/// <param name="Role">What it may do.</param>
public sealed record ControlCaller(string Name, ControlRole Role);

/// <summary>Checks control bus keys in constant time against <see cref="ControlBusOptions.ApiKeys"/>.</summary>
sealed class ControlAuthorization(IOptionsMonitor<ControlBusOptions> options)
{
    /// <summary>The caller owning <paramref name="presented"/>, or null when the key is missing or unknown.</summary>
    public ControlCaller? Authenticate(string? presented)
    {
        if (string.IsNullOrEmpty(presented))
            return null;
        var bytes = Encoding.UTF8.GetBytes(presented);
        ControlCaller? match = null;
        foreach (var key in options.CurrentValue.ApiKeys)
        {
            // Compare against every key so the time taken does not tell which one (or whether any) matched.
            if (CryptographicOperations.FixedTimeEquals(bytes, Encoding.UTF8.GetBytes(key.Key)))
                match = new ControlCaller(key.Name, key.Role);
        }

        return match;
    }

    /// <summary>The key an HTTP request presents: <c>X-Api-Key</c>, else <c>Authorization: Bearer</c>.</summary>
    public static string? KeyOf(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Headers.TryGetValue("X-Api-Key", out var apiKey) && !string.IsNullOrEmpty(apiKey))
            return apiKey.ToString();
        var authorization = request.Headers.Authorization.ToString();
        return authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization["Bearer ".Length..].Trim() : null;
    }
}
