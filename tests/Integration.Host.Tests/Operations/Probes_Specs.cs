using System.Net;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>Test messages through the parts route feed readiness: a broken route turns <c>/health/ready</c> unhealthy, a restored one healthy again.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Probes_Specs
{
    ControlHost _host = null!;

    [SetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("probes", new Dictionary<string, string?>
    {
        ["Integration:Probes:Enabled"] = "true",
        ["Integration:Probes:IntervalSeconds"] = "1",
        ["Integration:Probes:TimeoutSeconds"] = "2",
        ["Integration:Probes:UnhealthyAfter"] = "2",
    });

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    async Task<(HttpStatusCode Status, JsonElement Probes)> Ready()
    {
        using var response = await _host.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        return (response.StatusCode, body.GetProperty("checks").GetProperty("probes"));
    }

    async Task<bool> ProbesBecome(string status, TimeSpan timeout) =>
        await Eventually.TrueAsync(async () => (await Ready()).Probes.GetProperty("status").GetString() == status, timeout, TimeSpan.FromMilliseconds(250));

    [Test]
    public async Task When_the_route_breaks_should_turn_readiness_unhealthy_and_healthy_again_once_restored()
    {
        Assert.That(await Eventually.TrueAsync(async () =>
            (await Ready()).Probes.TryGetProperty("data", out var data) && data.ValueKind == JsonValueKind.Object
            && data.GetProperty("parts-requests").GetString()!.StartsWith("ok in", StringComparison.Ordinal), TimeSpan.FromSeconds(20)), Is.True,
            "no test message came through the healthy route");
        var metrics = await _host.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.That(metrics, Does.Contain("integration_probe_latency").And.Contain("integration_probe_up{"));

        var (paused, _) = await _host.Send(HttpMethod.Post, "/api/control/endpoints/parts-requests/pause", ControlHost.OperatorKey);
        Assert.That(paused, Is.EqualTo(HttpStatusCode.OK));

        Assert.That(await ProbesBecome("Unhealthy", TimeSpan.FromSeconds(20)), Is.True, "the broken route was not noticed");
        var (status, probes) = await Ready();
        Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        Assert.That(probes.GetProperty("description").GetString(), Does.Contain("parts-requests-discarded"));

        var (resumed, _) = await _host.Send(HttpMethod.Post, "/api/control/endpoints/parts-requests/resume", ControlHost.OperatorKey);
        Assert.That(resumed, Is.EqualTo(HttpStatusCode.OK));

        Assert.That(await ProbesBecome("Healthy", TimeSpan.FromSeconds(20)), Is.True, "the restored route was not noticed");
        Assert.That((await Ready()).Status, Is.EqualTo(HttpStatusCode.OK));
    }
}
