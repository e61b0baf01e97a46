using System.Net;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>The stock sample's smart proxy on the real host: correlated replies, pending requests on the control bus, timeouts with retries, the circuit opening and closing.</summary>
[TestFixture]
[Category("Integration")]
public sealed class SmartProxy_Specs
{
    ControlHost _host = null!;

    [SetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("proxy", new Dictionary<string, string?>
    {
        ["Integration:Stock:Proxy:Timeout"] = "00:00:01",
        ["Integration:Stock:Proxy:Retries"] = "1",
        ["Integration:Stock:Proxy:RetryDelay"] = "00:00:00.100",
        ["Integration:Stock:Proxy:FailureThreshold"] = "2",
        ["Integration:Stock:Proxy:OpenDuration"] = "00:01:00",
    });

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    async Task<JsonElement> Proxy()
    {
        var (status, body) = await _host.Send(HttpMethod.Get, "/api/control/proxies", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        return body.GetProperty("data").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "stock-levels");
    }

    [Test]
    public async Task When_the_service_answers_should_return_each_callers_own_reply()
    {
        var calls = Enumerable.Range(0, 10).Select(async i =>
        {
            using var response = await _host.Client.GetAsync(new Uri($"/api/stock/SKU-{i}", UriKind.Relative));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("sku").GetString();
        });

        Assert.That(await Task.WhenAll(calls), Is.EqualTo(Enumerable.Range(0, 10).Select(i => $"SKU-{i}")));
        Assert.That((await Proxy()).GetProperty("circuit").GetString(), Is.EqualTo("Closed"));
    }

    [Test]
    public async Task When_the_service_stops_answering_should_show_pending_requests_retry_open_the_circuit_and_close_it_on_reset()
    {
        var (paused, _) = await _host.Send(HttpMethod.Post, "/api/control/endpoints/stock-levels/pause", ControlHost.OperatorKey);
        Assert.That(paused, Is.EqualTo(HttpStatusCode.OK));

        var first = _host.Client.GetAsync(new Uri("/api/stock/SKU-1", UriKind.Relative));
        Assert.That(await Eventually.TrueAsync(async () => (await Proxy()).GetProperty("pending").GetArrayLength() == 1, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(50)),
            Is.True, "the waiting request is not listed");
        var pending = (await Proxy()).GetProperty("pending")[0];
        Assert.That(pending.GetProperty("messageType").GetString(), Is.EqualTo("StockLevelQuery"));
        Assert.That(await Eventually.TrueAsync(async () => (await Proxy()).GetProperty("pending").EnumerateArray().Any(p => p.GetProperty("attempt").GetInt32() == 2),
            TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(50)), Is.True, "the timed-out request was not retried");
        using (var response = await first)
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        using (var second = await _host.Client.GetAsync(new Uri("/api/stock/SKU-2", UriKind.Relative)))
            Assert.That(second.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));

        Assert.That((await Proxy()).GetProperty("circuit").GetString(), Is.EqualTo("Open"));
        var started = DateTime.UtcNow;
        using (var rejected = await _host.Client.GetAsync(new Uri("/api/stock/SKU-3", UriKind.Relative)))
        {
            Assert.That(rejected.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await rejected.Content.ReadAsStringAsync(), Does.Contain("Circuit open"));
        }

        Assert.That(DateTime.UtcNow - started, Is.LessThan(TimeSpan.FromMilliseconds(900)), "an open circuit must not wait for the service");
        var metrics = await _host.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.That(OperationsMetrics_Specs.Has(metrics, "integration_circuit_breaker_state", ["proxy=\"stock-levels\""], "2"), Is.True, "the open circuit is not in /metrics");

        await _host.Send(HttpMethod.Post, "/api/control/endpoints/stock-levels/resume", ControlHost.OperatorKey);
        var (denied, _) = await _host.Send(HttpMethod.Post, "/api/control/proxies/stock-levels/reset", ControlHost.ViewerKey);
        var (reset, _) = await _host.Send(HttpMethod.Post, "/api/control/proxies/stock-levels/reset", ControlHost.OperatorKey);
        Assert.That(denied, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(reset, Is.EqualTo(HttpStatusCode.OK));
        using (var ok = await _host.Client.GetAsync(new Uri("/api/stock/SKU-4", UriKind.Relative)))
            Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Proxy()).GetProperty("circuit").GetString(), Is.EqualTo("Closed"));
    }
}
