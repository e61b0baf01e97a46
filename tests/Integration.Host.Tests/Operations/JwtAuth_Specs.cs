using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Integration.Operations;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// Bearer tokens from an identity provider on the control API, next to the API keys: a test issuer (an RSA key made here)
/// signs tokens, the host trusts its public key (<c>Integration:ControlBus:Jwt</c>), and every refusal is audited by subject.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class JwtAuth_Specs
{
    const string Issuer = "https://issuer.test/";
    const string Audience = "integration-control";

    readonly RSA _issuerKey = RSA.Create(2048);
    readonly JsonWebTokenHandler _tokens = new();
    ControlHost _host = null!;

    Dictionary<string, string?> Settings() => new()
    {
        ["Integration:ControlBus:Jwt:Issuer"] = Issuer,
        ["Integration:ControlBus:Jwt:Audience"] = Audience,
        ["Integration:ControlBus:Jwt:SigningKeys:0"] = _issuerKey.ExportSubjectPublicKeyInfoPem(),
        ["Integration:ControlBus:Jwt:Roles:integration-viewers"] = "Viewer",
        ["Integration:ControlBus:Jwt:Roles:integration-operators"] = "Operator",
        ["Integration:ControlBus:Jwt:Permissions:dead-letters.delete"] = "ops.purge",
    };

    [OneTimeSetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("jwt", Settings());

    [OneTimeTearDown]
    public async Task StopHost()
    {
        await _host.DisposeAsync();
        _issuerKey.Dispose();
    }

    static string Subject() => $"user-{Guid.NewGuid():N}"[..17];

    string Token(string subject, string[] roles, string audience = Audience, RSA? key = null, bool expired = false, string? scope = null)
    {
        var now = DateTime.UtcNow;
        var claims = new Dictionary<string, object> { ["sub"] = subject, ["roles"] = roles };
        if (scope is not null)
            claims["scope"] = scope;
        return _tokens.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = audience,
            Claims = claims,
            IssuedAt = expired ? now.AddHours(-2) : now,
            NotBefore = expired ? now.AddHours(-2) : now,
            Expires = expired ? now.AddHours(-1) : now.AddMinutes(10),
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(key ?? _issuerKey), SecurityAlgorithms.RsaSha256),
        });
    }

    async Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, string path, string token)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await _host.Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    async Task<List<ControlAuditRecord>> AuditOf(string subject) => (await _host.Audit()).Where(a => a.Actor == subject).ToList();

    static string Detail(JsonElement problem) => problem.TryGetProperty("detail", out var detail) ? detail.GetString() ?? "" : "";

    [Test]
    public async Task When_a_viewer_token_reads_should_answer_with_the_data()
    {
        var subject = Subject();

        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", Token(subject, ["integration-viewers"]));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(body.GetProperty("outcome").GetString(), Is.EqualTo("ok"));
            Assert.That((await AuditOf(subject)).Single(), Has.Property("Action").EqualTo("routes.list").And.Property("Outcome").EqualTo("ok"));
        });
    }

    [Test]
    public async Task When_a_viewer_token_retries_failures_should_answer_403_and_audit_the_subject()
    {
        var subject = Subject();
        var token = Token(subject, ["integration-viewers"]);

        var (status, body) = await Send(HttpMethod.Post, "/api/control/failures/orders_error/retry", token);

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(Detail(body), Does.Contain($"Token of '{subject}' (Viewer) may not run 'failures.retry' (needs Operator)"));
            var audit = (await AuditOf(subject)).Single();
            Assert.That(audit, Has.Property("Action").EqualTo("failures.retry").And.Property("Outcome").EqualTo("denied").And.Property("Channel").EqualTo("http"));
            Assert.That((await _host.Audit()).Any(a => (a.Actor + a.Details + a.Target).Contains(token, StringComparison.Ordinal)), Is.False, "the token was audited");
        });
    }

    [Test]
    public async Task When_an_operator_token_retries_failures_should_pass_authorization()
    {
        var subject = Subject();

        var (status, _) = await Send(HttpMethod.Post, "/api/control/failures/orders_error/retry", Token(subject, ["integration-viewers", "integration-operators"]));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.Not.EqualTo(HttpStatusCode.Unauthorized).And.Not.EqualTo(HttpStatusCode.Forbidden));
            var audit = (await AuditOf(subject)).Single();
            Assert.That(audit.Action, Is.EqualTo("failures.retry"));
            Assert.That(audit.Outcome, Is.Not.EqualTo("denied").And.Not.EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_action_requires_a_scope_the_token_lacks_should_answer_403_naming_the_setting()
    {
        var subject = Subject();

        var (status, body) = await Send(HttpMethod.Delete, "/api/control/dead-letters/nothing_error?confirm=nothing_error", Token(subject, ["integration-operators"]));
        var (allowed, _) = await Send(HttpMethod.Get, "/api/control/endpoints", Token(subject, ["integration-operators"]));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(Detail(body), Does.Contain("'ops.purge'").And.Contain("Integration:ControlBus:Jwt:Permissions:dead-letters.delete"));
            Assert.That(allowed, Is.EqualTo(HttpStatusCode.OK));
            Assert.That((await AuditOf(subject)).Single(a => a.Action == "dead-letters.delete").Outcome, Is.EqualTo("denied"));
        });
    }

    [Test]
    public async Task When_the_token_carries_the_required_scope_should_pass_authorization()
    {
        var subject = Subject();

        var (status, _) = await Send(HttpMethod.Delete, "/api/control/dead-letters/nothing_error?confirm=nothing_error",
            Token(subject, ["integration-operators"], scope: "openid ops.purge"));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.Not.EqualTo(HttpStatusCode.Unauthorized).And.Not.EqualTo(HttpStatusCode.Forbidden));
            Assert.That((await AuditOf(subject)).Single().Outcome, Is.Not.EqualTo("denied").And.Not.EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_token_has_expired_should_answer_401_and_audit_the_subject()
    {
        var subject = Subject();

        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", Token(subject, ["integration-operators"], expired: true));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(Detail(body), Does.Contain("expired"));
            Assert.That((await AuditOf(subject)).Single(), Has.Property("Action").EqualTo("routes.list").And.Property("Outcome").EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_token_is_for_another_audience_should_answer_401_and_audit_the_subject()
    {
        var subject = Subject();

        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", Token(subject, ["integration-operators"], audience: "some-other-api"));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(Detail(body), Does.Contain($"audience must be '{Audience}'"));
            Assert.That((await AuditOf(subject)).Single().Outcome, Is.EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_token_is_unsigned_should_answer_401_and_audit_the_subject()
    {
        var subject = Subject();
        var unsigned = _tokens.CreateToken(JsonSerializer.Serialize(new
        {
            sub = subject,
            roles = new[] { "integration-operators" },
            iss = Issuer,
            aud = Audience,
            exp = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds(),
        }));

        var (status, body) = await Send(HttpMethod.Post, "/api/control/endpoints/anything/pause", unsigned);

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(Detail(body), Does.Contain("signature"));
            Assert.That((await AuditOf(subject)).Single(), Has.Property("Action").EqualTo("endpoint.pause").And.Property("Outcome").EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_token_is_signed_by_another_key_should_answer_401()
    {
        var subject = Subject();
        using var stranger = RSA.Create(2048);

        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", Token(subject, ["integration-operators"], key: stranger));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(Detail(body), Does.Contain("sign"));
            Assert.That((await AuditOf(subject)).Single().Outcome, Is.EqualTo("unauthorized"));
        });
    }

    [Test]
    public async Task When_the_token_maps_to_no_role_should_answer_403()
    {
        var subject = Subject();

        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", Token(subject, ["somebody-else"]));

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(Detail(body), Does.Contain("Integration:ControlBus:Jwt:Roles"));
            Assert.That((await AuditOf(subject)).Single().Outcome, Is.EqualTo("denied"));
        });
    }

    [Test]
    public async Task When_an_api_key_is_used_alongside_should_still_work()
    {
        var (viewer, _) = await _host.Send(HttpMethod.Get, "/api/control/routes", ControlHost.ViewerKey);
        var (bearer, _) = await Send(HttpMethod.Get, "/api/control/endpoints", ControlHost.OperatorKey);
        var (denied, _) = await _host.Send(HttpMethod.Post, "/api/control/endpoints/anything/pause", ControlHost.ViewerKey);

        Assert.Multiple(() =>
        {
            Assert.That(viewer, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(bearer, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(denied, Is.EqualTo(HttpStatusCode.Forbidden));
        });
    }

    static async Task<Exception?> StartWith(Dictionary<string, string?> settings)
    {
        try
        {
            await using var host = await ControlHost.StartAsync("jwtcfg", settings);
            return null;
        }
        catch (Exception exception)
        {
            return exception;
        }
    }

    [TestCase("Integration:ControlBus:Jwt:Audience", "", "Integration:ControlBus:Jwt:Audience")]
    [TestCase("Integration:ControlBus:Jwt:SigningKeys:0", "not a key", "Integration:ControlBus:Jwt:SigningKeys:0")]
    [TestCase("Integration:ControlBus:Jwt:Authority", "http://idp.test/realms/ops", "Integration:ControlBus:Jwt:Authority")]
    [TestCase("Integration:ControlBus:Jwt:Roles:integration-operators", "Admin", "Integration:ControlBus:Jwt:Roles:integration-operators")]
    public async Task When_the_jwt_options_are_wrong_should_fail_at_start_naming_the_key(string key, string value, string named)
    {
        var settings = Settings();
        settings[key] = value;

        var failure = await StartWith(settings);

        Assert.That(failure, Is.Not.Null, "the host started");
        Assert.That(failure!.ToString(), Does.Contain(named));
    }
}
