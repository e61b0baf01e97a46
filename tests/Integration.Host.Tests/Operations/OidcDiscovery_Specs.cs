using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The control API trusting an OIDC identity provider by discovery alone (<c>Integration:ControlBus:Jwt:Authority</c>):
/// a test issuer on this machine publishes <c>/.well-known/openid-configuration</c> and its signing keys (JWKS); the host
/// learns the issuer and keys from there, follows a key rotation, and refuses tokens of any other issuer.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class OidcDiscovery_Specs
{
    const string Audience = "integration-control";

    readonly RSA _firstKey = RSA.Create(2048);
    readonly RSA _rotatedKey = RSA.Create(2048);
    readonly JsonWebTokenHandler _tokens = new();
    TestIssuer _issuer = null!;
    ControlHost _host = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _issuer = await TestIssuer.StartAsync();
        _issuer.Publish(("first", _firstKey));
        _host = await ControlHost.StartAsync("oidc", new Dictionary<string, string?>
        {
            ["Integration:ControlBus:Jwt:Authority"] = _issuer.Authority,
            ["Integration:ControlBus:Jwt:RequireHttpsMetadata"] = "false",   // a local test issuer; https is the default
            ["Integration:ControlBus:Jwt:Audience"] = Audience,
            ["Integration:ControlBus:Jwt:KeyRefreshSeconds"] = "1",        // an unknown key id is looked up again within a second
            ["Integration:ControlBus:Jwt:Roles:integration-viewers"] = "Viewer",
        });
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _host.DisposeAsync();
        await _issuer.DisposeAsync();
        _firstKey.Dispose();
        _rotatedKey.Dispose();
    }

    string Token(string keyId, RSA key, string? issuer = null) => _tokens.CreateToken(new SecurityTokenDescriptor
    {
        Issuer = issuer ?? _issuer.Authority,
        Audience = Audience,
        Claims = new Dictionary<string, object> { ["sub"] = $"oidc-{Guid.NewGuid():N}"[..16], ["roles"] = new[] { "integration-viewers" } },
        Expires = DateTime.UtcNow.AddMinutes(10),
        SigningCredentials = new SigningCredentials(new RsaSecurityKey(key) { KeyId = keyId }, SecurityAlgorithms.RsaSha256),
    });

    async Task<HttpStatusCode> Read(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("/api/control/routes", UriKind.Relative));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await _host.Client.SendAsync(request);
        return response.StatusCode;
    }

    [Test, Order(1)]
    public async Task When_a_token_of_the_discovered_issuer_is_presented_should_answer_with_the_data()
    {
        Assert.That(await Read(Token("first", _firstKey)), Is.EqualTo(HttpStatusCode.OK));
        Assert.That(_issuer.DiscoveryRequests, Is.GreaterThan(0), "the host read the issuer's discovery document");
    }

    [Test, Order(2)]
    public async Task When_the_token_names_another_issuer_should_answer_401()
    {
        Assert.That(await Read(Token("first", _firstKey, issuer: "https://someone-else.test/")), Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test, Order(3)]
    public async Task When_signed_by_a_key_the_issuer_never_published_should_answer_401()
    {
        using var stranger = RSA.Create(2048);
        Assert.That(await Read(Token("stranger", stranger)), Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test, Order(4)]
    public async Task When_the_issuer_rotates_its_signing_key_should_accept_tokens_signed_with_the_new_one()
    {
        // The issuer publishes the new key next to the old one and signs with it from now on: the host, meeting a key id it
        // does not know, reads the keys again, and the old tokens still verify.
        _issuer.Publish(("first", _firstKey), ("rotated", _rotatedKey));

        // (A refresh at most once per KeyRefreshSeconds: the stranger's token may just have used it.)
        var rotated = Token("rotated", _rotatedKey);
        Assert.That(await Integration.Testing.Eventually.TrueAsync(async () => await Read(rotated) == HttpStatusCode.OK, TimeSpan.FromSeconds(15)),
            Is.True, "a token signed with the issuer's new key was never accepted");
        Assert.That(await Read(Token("first", _firstKey)), Is.EqualTo(HttpStatusCode.OK), "the old key still verifies");
    }

    /// <summary>A minimal OIDC issuer on 127.0.0.1: a discovery document and a JWKS of the keys published last.</summary>
    sealed class TestIssuer : IAsyncDisposable
    {
        readonly WebApplication _app;
        volatile string _jwks = """{"keys":[]}""";
        int _discoveryRequests;

        TestIssuer(WebApplication app) => _app = app;

        public string Authority { get; private set; } = "";

        public int DiscoveryRequests => Volatile.Read(ref _discoveryRequests);

        public static async Task<TestIssuer> StartAsync()
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseUrls("http://127.0.0.1:0");
            var app = builder.Build();
            var issuer = new TestIssuer(app);
            app.MapGet("/.well-known/openid-configuration", () =>
            {
                Interlocked.Increment(ref issuer._discoveryRequests);
                return Results.Text($$"""
                    {"issuer":"{{issuer.Authority}}","jwks_uri":"{{issuer.Authority}}jwks","id_token_signing_alg_values_supported":["RS256"],
                     "response_types_supported":["code"],"subject_types_supported":["public"]}
                    """, "application/json");
            });
            app.MapGet("/jwks", () => Results.Text(issuer._jwks, "application/json"));
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            issuer.Authority = address.TrimEnd('/') + "/";
            return issuer;
        }

        public void Publish(params (string KeyId, RSA Key)[] keys)
        {
            var set = keys.Select(k =>
            {
                var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(k.Key.ExportParameters(false)) { KeyId = k.KeyId });
                return $$"""{"kty":"RSA","use":"sig","alg":"RS256","kid":"{{k.KeyId}}","n":"{{jwk.N}}","e":"{{jwk.E}}"}""";
            });
            _jwks = $$"""{"keys":[{{string.Join(',', set)}}]}""";
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
