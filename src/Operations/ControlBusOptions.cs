using System.ComponentModel.DataAnnotations;

namespace Integration.Operations;

/// <summary>Control bus access, bound from <c>Integration:ControlBus</c>. There is no default key outside Development.</summary>
public sealed class ControlBusOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:ControlBus";

    /// <summary>Keys that may call the control bus. With none, every control call is refused (401).</summary>
    public List<ControlApiKey> ApiKeys { get; set; } = [];

    /// <summary>Name of the per-instance control queue prefix on RabbitMQ (each host instance gets its own queue).</summary>
    [Required] public string QueuePrefix { get; set; } = "control-bus";

    /// <summary>
    /// Bearer tokens from an identity provider (<c>Integration:ControlBus:Jwt</c>), accepted alongside <see cref="ApiKeys"/>.
    /// Null (no section): only API keys.
    /// </summary>
    public ControlJwtOptions? Jwt { get; set; }

    internal static IEnumerable<string> Validate(ControlBusOptions options)
    {
        var duplicate = options.ApiKeys.GroupBy(k => k.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            yield return $"{Section}:ApiKeys: the name '{duplicate.Key}' is used by more than one key";
        foreach (var (key, i) in options.ApiKeys.Select((k, i) => (k, i)))
        {
            if (key.Key.Length < 16 || string.IsNullOrWhiteSpace(key.Name))
                yield return $"{Section}:ApiKeys:{i}: a key needs a Name and a Key of at least 16 characters";
        }

        if (options.Jwt is not null)
        {
            foreach (var failure in ControlJwtOptions.Validate(options.Jwt, $"{Section}:Jwt"))
                yield return failure;
        }
    }
}

/// <summary>One caller of the control bus.</summary>
public sealed class ControlApiKey
{
    /// <summary>Who this key belongs to; written to the audit log as the actor.</summary>
    [Required] public string Name { get; set; } = "";

    /// <summary>The secret, sent as <c>X-Api-Key</c> or <c>Authorization: Bearer</c>. At least 16 characters. Never logged.</summary>
    [Required, MinLength(16)] public string Key { get; set; } = "";

    /// <summary><see cref="ControlRole.Viewer"/> may read; <see cref="ControlRole.Operator"/> may also change things.</summary>
    public ControlRole Role { get; set; } = ControlRole.Viewer;
}

/// <summary>What a control bus key may do.</summary>
public enum ControlRole
{
    /// <summary>Read-only: list routes, endpoints, audit.</summary>
    Viewer,

    /// <summary>Read and change: pause/resume, log levels, route switches.</summary>
    Operator,
}

/// <summary>
/// JWT bearer tokens for the control API, bound from <c>Integration:ControlBus:Jwt</c>. Either <see cref="Authority"/> (OIDC
/// discovery of the issuer and its signing keys) or <see cref="Issuer"/> with <see cref="SigningKeys"/> or
/// <see cref="SigningKeyFile"/> (an offline issuer). Tokens are checked for signature, issuer, <see cref="Audience"/> and
/// lifetime, then mapped to a <see cref="ControlRole"/> through <see cref="Roles"/>.
/// </summary>
public sealed class ControlJwtOptions
{
    /// <summary>OIDC issuer URL; its <c>/.well-known/openid-configuration</c> gives the issuer and signing keys.</summary>
    public string? Authority { get; set; }

    /// <summary>Require https for <see cref="Authority"/> (default true; turn off only for a local test issuer).</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    /// <summary>The expected <c>iss</c>. Required without <see cref="Authority"/>; with it, overrides the discovered issuer.</summary>
    public string? Issuer { get; set; }

    /// <summary>The expected <c>aud</c> (required).</summary>
    public string? Audience { get; set; }

    /// <summary>Public keys (PEM: RSA or EC <c>PUBLIC KEY</c>) that sign tokens, for an issuer without discovery.</summary>
    public List<string> SigningKeys { get; set; } = [];

    /// <summary>A PEM file with one or more public signing keys, for an issuer without discovery.</summary>
    public string? SigningKeyFile { get; set; }

    /// <summary>The claim holding the caller's roles or groups (default <c>roles</c>); its values are looked up in <see cref="Roles"/>.</summary>
    public string RoleClaim { get; set; } = "roles";

    /// <summary>The claim naming the caller in the audit log (default <c>sub</c>; <c>client_id</c> or <c>azp</c> when absent).</summary>
    public string NameClaim { get; set; } = "sub";

    /// <summary>
    /// Claim value (of <see cref="RoleClaim"/>) to control role name (<see cref="ControlRole"/>), e.g.
    /// <c>integration-operators: Operator</c>. The highest match wins; a token with no mapped value is refused (403).
    /// </summary>
    public Dictionary<string, string> Roles { get; set; } = [];

    /// <summary>The role named <paramref name="name"/>, or null.</summary>
    internal static ControlRole? RoleNamed(string? name) =>
        Enum.GetNames<ControlRole>().FirstOrDefault(n => string.Equals(n, name?.Trim(), StringComparison.OrdinalIgnoreCase)) is { } found
            ? Enum.Parse<ControlRole>(found)
            : null;

    /// <summary>
    /// Per action (e.g. <c>failures.retry</c>), a scope or claim value the token must also carry (in <c>scope</c>, <c>scp</c>
    /// or <see cref="RoleClaim"/>), on top of the action's role. API keys are not affected.
    /// </summary>
    public Dictionary<string, string> Permissions { get; set; } = [];

    /// <summary>
    /// With <see cref="Authority"/>: a token signed by a key id the host has not seen makes it read the issuer's keys again
    /// (a key rotation), at most once per this many seconds (default 300, as the identity model library). Besides, the
    /// discovery document and keys are read again every 12 hours.
    /// </summary>
    [Range(1, 86400)] public int KeyRefreshSeconds { get; set; } = 300;

    /// <summary>Tolerated clock difference with the issuer, in seconds (default 30).</summary>
    [Range(0, 600)] public int ClockSkewSeconds { get; set; } = 30;

    internal static IEnumerable<string> Validate(ControlJwtOptions options, string section)
    {
        if (string.IsNullOrWhiteSpace(options.Audience))
            yield return $"{section}:Audience: required (the aud the control API accepts)";
        var offline = options.SigningKeys.Count > 0 || !string.IsNullOrWhiteSpace(options.SigningKeyFile);
        if (string.IsNullOrWhiteSpace(options.Authority))
        {
            if (string.IsNullOrWhiteSpace(options.Issuer))
                yield return $"{section}:Issuer: required without {section}:Authority";
            if (!offline)
                yield return $"{section}:SigningKeys: set {section}:Authority (OIDC discovery) or {section}:SigningKeys / {section}:SigningKeyFile";
        }
        else if (!Uri.TryCreate(options.Authority, UriKind.Absolute, out var authority) || authority.Scheme is not ("https" or "http"))
            yield return $"{section}:Authority: '{options.Authority}' is not an absolute http(s) URL";
        else if (authority.Scheme == "http" && options.RequireHttpsMetadata)
            yield return $"{section}:Authority: '{options.Authority}' is not https (set {section}:RequireHttpsMetadata to false only for a local issuer)";
        else if (offline)
            yield return $"{section}:SigningKeys: give either {section}:Authority or signing keys, not both";

        foreach (var (pem, i) in options.SigningKeys.Select((k, i) => (k, i)))
        {
            if (ControlJwtKeys.Parse(pem, out var error).Count == 0)
                yield return $"{section}:SigningKeys:{i}: {error}";
        }

        if (!string.IsNullOrWhiteSpace(options.SigningKeyFile))
        {
            if (!File.Exists(options.SigningKeyFile))
                yield return $"{section}:SigningKeyFile: '{options.SigningKeyFile}' does not exist";
            else if (ControlJwtKeys.Parse(File.ReadAllText(options.SigningKeyFile), out var error).Count == 0)
                yield return $"{section}:SigningKeyFile: '{options.SigningKeyFile}': {error}";
        }

        if (string.IsNullOrWhiteSpace(options.RoleClaim))
            yield return $"{section}:RoleClaim: required (default roles)";
        if (string.IsNullOrWhiteSpace(options.NameClaim))
            yield return $"{section}:NameClaim: required (default sub)";
        if (options.Roles.Count == 0)
            yield return $"{section}:Roles: map at least one {options.RoleClaim} value to a role ({string.Join(", ", Enum.GetNames<ControlRole>())})";
        foreach (var (value, role) in options.Roles)
        {
            if (RoleNamed(role) is null)
                yield return $"{section}:Roles:{value}: '{role}' is not a role ({string.Join(", ", Enum.GetNames<ControlRole>())})";
        }

        foreach (var (action, required) in options.Permissions)
        {
            if (string.IsNullOrWhiteSpace(required))
                yield return $"{section}:Permissions:{action}: name the scope or claim value the action requires";
        }
    }
}
