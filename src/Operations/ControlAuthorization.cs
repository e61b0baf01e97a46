using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace Integration.Operations;

/// <summary>The caller of a control command, once its key or bearer token was checked.</summary>
/// <param name="Name">Key name, or the token's subject (the audit actor).</param>
/// <param name="Role">What it may do.</param>
public sealed record ControlCaller(string Name, ControlRole Role)
{
    /// <summary>Why the caller is refused before any command runs (a bad token, a token without a mapped role); null when accepted.</summary>
    internal string? Refusal { get; init; }

    /// <summary>The answer to <see cref="Refusal"/>: <see cref="ControlOutcome.Unauthorized"/> or <see cref="ControlOutcome.Denied"/>.</summary>
    internal ControlOutcome RefusalOutcome { get; init; } = ControlOutcome.Unauthorized;

    /// <summary>Scopes and role claim values of a bearer token (checked against <see cref="ControlJwtOptions.Permissions"/>); null for API keys.</summary>
    internal IReadOnlySet<string>? Grants { get; init; }

    /// <summary>How refusals name the caller.</summary>
    internal string Describe() => Grants is null ? $"Key '{Name}'" : $"Token of '{Name}'";
}

/// <summary>
/// Checks control bus keys in constant time against <see cref="ControlBusOptions.ApiKeys"/>, and bearer tokens (signature,
/// issuer, audience, lifetime) against <see cref="ControlBusOptions.Jwt"/>.
/// </summary>
sealed class ControlAuthorization(IOptionsMonitor<ControlBusOptions> options)
{
    readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    Validation? _validation;

    sealed record Validation(ControlJwtOptions Options, TokenValidationParameters Parameters);

    /// <summary>
    /// The caller owning <paramref name="presented"/> (an API key or, with <c>Integration:ControlBus:Jwt</c>, a JWT), or null
    /// when nothing or an unknown key was presented. A token that fails its checks gives a caller with a refusal, named by
    /// the token's subject (the token itself is never kept).
    /// </summary>
    public async Task<ControlCaller?> AuthenticateAsync(string? presented, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(presented))
            return null;
        var key = MatchKey(presented);
        if (key is not null)
            return key;
        var jwt = options.CurrentValue.Jwt;
        if (jwt is null || !_handler.CanReadToken(presented))
            return null;
        cancellationToken.ThrowIfCancellationRequested();
        return await ValidateAsync(jwt, presented).ConfigureAwait(false);
    }

    ControlCaller? MatchKey(string presented)
    {
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

    async Task<ControlCaller> ValidateAsync(ControlJwtOptions jwt, string token)
    {
        var validation = _validation;
        if (validation is null || !ReferenceEquals(validation.Options, jwt))
            _validation = validation = new Validation(jwt, Parameters(jwt));

        var result = await _handler.ValidateTokenAsync(token, validation.Parameters).ConfigureAwait(false);
        if (!result.IsValid || result.SecurityToken is not JsonWebToken valid)
        {
            var name = SubjectOf(jwt, Unverified(token));
            return new ControlCaller(name, ControlRole.Viewer) { Refusal = Reason(jwt, result.Exception), Grants = new HashSet<string>() };
        }

        var subject = SubjectOf(jwt, valid);
        var grants = new HashSet<string>(StringComparer.Ordinal);
        ControlRole? role = null;
        foreach (var claim in valid.Claims)
        {
            if (claim.Type == jwt.RoleClaim)
            {
                grants.Add(claim.Value);
                if (jwt.Roles.TryGetValue(claim.Value, out var name) && ControlJwtOptions.RoleNamed(name) is { } mapped && (role is null || mapped > role))
                    role = mapped;
            }
            else if (claim.Type is "scope" or "scp")
            {
                foreach (var scope in claim.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                    grants.Add(scope);
            }
        }

        return role is { } granted
            ? new ControlCaller(subject, granted) { Grants = grants }
            : new ControlCaller(subject, ControlRole.Viewer)
            {
                Refusal = $"Token of '{subject}' carries no {jwt.RoleClaim} value mapped to a role in {ControlBusOptions.Section}:Jwt:Roles",
                RefusalOutcome = ControlOutcome.Denied,
                Grants = grants,
            };
    }

    /// <summary>The scope or claim value <paramref name="caller"/> lacks for <paramref name="action"/> (<c>Jwt:Permissions</c>), or null.</summary>
    public string? MissingPermission(ControlCaller caller, string action)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (caller.Grants is null || options.CurrentValue.Jwt is not { } jwt)
            return null;
        var required = jwt.Permissions.FirstOrDefault(p => string.Equals(p.Key, action, StringComparison.OrdinalIgnoreCase)).Value;
        return string.IsNullOrEmpty(required) || caller.Grants.Contains(required) ? null : required;
    }

    static TokenValidationParameters Parameters(ControlJwtOptions jwt)
    {
        var parameters = new TokenValidationParameters
        {
            ValidateIssuer = true,
            ValidIssuer = string.IsNullOrWhiteSpace(jwt.Issuer) ? null : jwt.Issuer,
            ValidateAudience = true,
            ValidAudience = jwt.Audience,
            ValidateLifetime = true,
            RequireExpirationTime = true,
            RequireSignedTokens = true,
            ValidateIssuerSigningKey = true,
            ClockSkew = TimeSpan.FromSeconds(jwt.ClockSkewSeconds),
            NameClaimType = jwt.NameClaim,
            RoleClaimType = jwt.RoleClaim,
        };
        if (!string.IsNullOrWhiteSpace(jwt.Authority))
        {
            var metadata = jwt.Authority.TrimEnd('/') + "/.well-known/openid-configuration";
            parameters.ConfigurationManager = new ConfigurationManager<OpenIdConnectConfiguration>(metadata, new OpenIdConnectConfigurationRetriever(),
                new HttpDocumentRetriever { RequireHttps = jwt.RequireHttpsMetadata })
            {
                RefreshInterval = TimeSpan.FromSeconds(jwt.KeyRefreshSeconds),
            };
        }
        else
        {
            var keys = jwt.SigningKeys.SelectMany(pem => ControlJwtKeys.Parse(pem, out _)).ToList();
            if (!string.IsNullOrWhiteSpace(jwt.SigningKeyFile))
                keys.AddRange(ControlJwtKeys.Parse(File.ReadAllText(jwt.SigningKeyFile), out _));
            parameters.IssuerSigningKeys = keys;
        }

        return parameters;
    }

    JsonWebToken? Unverified(string token)
    {
        try
        {
            return _handler.ReadJsonWebToken(token);
        }
        catch (ArgumentException)
        {
            // Not a readable JWT (SecurityTokenMalformedException is one): nobody to name.
            return null;
        }
    }

    static string SubjectOf(ControlJwtOptions jwt, JsonWebToken? token)
    {
        if (token is null)
            return "anonymous";
        foreach (var type in new[] { jwt.NameClaim, "sub", "client_id", "azp" })
        {
            if (token.TryGetPayloadValue<string>(type, out var value) && !string.IsNullOrWhiteSpace(value))
                return value.Length > 200 ? value[..200] : value;
        }

        return "anonymous";
    }

    static string Reason(ControlJwtOptions jwt, Exception? exception) => exception switch
    {
        SecurityTokenExpiredException expired => $"The bearer token expired at {expired.Expires:O}",
        SecurityTokenNotYetValidException => "The bearer token is not valid yet",
        SecurityTokenNoExpirationException => "The bearer token has no expiry (exp)",
        SecurityTokenInvalidAudienceException => $"The bearer token is not for this API (audience must be '{jwt.Audience}')",
        SecurityTokenInvalidIssuerException => "The bearer token's issuer is not trusted",
        SecurityTokenSignatureKeyNotFoundException => "The bearer token is not signed by a trusted key",
        SecurityTokenInvalidSignatureException => "The bearer token's signature is missing or not valid",
        SecurityTokenInvalidAlgorithmException => "The bearer token's signing algorithm is not accepted",
        SecurityTokenMalformedException => "The bearer token is malformed",
        _ => "The bearer token is not valid",
    };

    /// <summary>The key an HTTP request presents: <c>X-Api-Key</c>, else <c>Authorization: Bearer</c> (an API key or a JWT).</summary>
    public static string? KeyOf(HttpRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Headers.TryGetValue("X-Api-Key", out var apiKey) && !string.IsNullOrEmpty(apiKey))
            return apiKey.ToString();
        var authorization = request.Headers.Authorization.ToString();
        return authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? authorization["Bearer ".Length..].Trim() : null;
    }
}

/// <summary>Reads PEM public keys (RSA or EC) into signing keys.</summary>
static class ControlJwtKeys
{
    public static IReadOnlyList<SecurityKey> Parse(string pem, out string? error)
    {
        error = null;
        var keys = new List<SecurityKey>();
        var text = pem.AsSpan();
        while (PemEncoding.TryFind(text, out var fields))
        {
            var block = text[fields.Location].ToString();
            var label = text[fields.Label].ToString();
            text = text[fields.Location.End..];
            if (label.Contains("PRIVATE", StringComparison.Ordinal))
            {
                error = "a private key was given; give the issuer's public key";
                return [];
            }

            try
            {
                var rsa = RSA.Create();
                rsa.ImportFromPem(block);
                keys.Add(new RsaSecurityKey(rsa));
                continue;
            }
            catch (Exception exception) when (exception is CryptographicException or ArgumentException)
            {
            }

            try
            {
                var ecdsa = ECDsa.Create();
                ecdsa.ImportFromPem(block);
                keys.Add(new ECDsaSecurityKey(ecdsa));
            }
            catch (Exception exception) when (exception is CryptographicException or ArgumentException)
            {
                error = $"a '{label}' PEM block is neither an RSA nor an EC public key";
                return [];
            }
        }

        if (keys.Count == 0)
            error ??= "not a PEM public key (-----BEGIN PUBLIC KEY-----)";
        return keys;
    }
}
