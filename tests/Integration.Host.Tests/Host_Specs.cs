using System.Net;
using System.Text.Json;
using Integration.Testing;
using Integration.Testing.Faults;
using NUnit.Framework;

namespace Integration.Host.Tests;

[TestFixture]
[Category("Integration")]
public sealed class Host_Specs
{
    [Test]
    public async Task When_broker_and_database_run_should_report_ready()
    {
        await using var host = await TestHost.StartAsync("host", configure: options => options.ReadinessPath = null);
        var client = host.Client;

        var live = await client.GetAsync(new Uri("/health/live", UriKind.Relative));
        Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        JsonElement ready = default;
        var healthy = await Eventually.TrueAsync(async () =>
        {
            using var response = await client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            ready = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            return response.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(30));

        Assert.That(healthy, Is.True, () => $"/health/ready never answered healthy: {ready}");
        Assert.That(ready.GetProperty("status").GetString(), Is.EqualTo("Healthy"));
        var checks = ready.GetProperty("checks");
        Assert.Multiple(() =>
        {
            Assert.That(checks.TryGetProperty("postgres", out _), Is.True, "database check missing");
            Assert.That(checks.TryGetProperty("rabbitmq", out _), Is.True, "broker check missing");
            Assert.That(checks.EnumerateObject().Any(c => c.Name.StartsWith("masstransit", StringComparison.Ordinal)), Is.True, "bus check missing");
        });
    }

    [Test]
    public async Task When_broker_is_unreachable_should_report_not_ready_with_the_reason()
    {
        var closedPort = ClosedPort();
        await using var host = await TestHost.StartAsync("host", new Dictionary<string, string?>
        {
            ["Integration:RabbitMq:Port"] = closedPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
        }, options => options.ReadinessPath = null);
        var client = host.Client;

        var live = await client.GetAsync(new Uri("/health/live", UriKind.Relative));
        Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the host must stay alive while the broker is down");

        JsonElement ready = default;
        HttpStatusCode status = default;
        var reported = await Eventually.TrueAsync(async () =>
        {
            using var response = await client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            status = response.StatusCode;
            ready = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            return status == HttpStatusCode.ServiceUnavailable;
        }, TimeSpan.FromSeconds(30));

        Assert.That(reported, Is.True, () => $"/health/ready answered {status}: {ready}");
        var rabbit = ready.GetProperty("checks").GetProperty("rabbitmq");
        Assert.Multiple(() =>
        {
            Assert.That(rabbit.GetProperty("status").GetString(), Is.EqualTo("Unhealthy"));
            Assert.That(rabbit.GetProperty("description").GetString(), Does.StartWith("RabbitMQ unreachable at"), "the reason must be reported");
            Assert.That(ready.GetProperty("checks").GetProperty("postgres").GetProperty("status").GetString(), Is.EqualTo("Healthy"));
        });
    }

    [Test]
    public async Task When_broker_goes_down_and_comes_back_should_report_unhealthy_then_recover()
    {
        var amqp = (await IntegrationInfrastructure.GetAsync()).RabbitMqUri;
        await using var proxy = TcpProxy.Start(amqp.Host, amqp.Port > 0 ? amqp.Port : 5672);
        await using var host = await TestHost.StartAsync("host", new Dictionary<string, string?>
        {
            ["Integration:RabbitMq:Host"] = "127.0.0.1",
            ["Integration:RabbitMq:Port"] = proxy.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Integration:RabbitMq:HeartbeatSeconds"] = "2",
        }, options => options.ReadinessPath = null);
        var client = host.Client;

        Assert.That(await ReadyStatusBecomes(client, HttpStatusCode.OK), Is.True, "host never became ready through the proxy");

        proxy.Disconnect();
        JsonElement down = default;
        var unhealthy = await Eventually.TrueAsync(async () =>
        {
            using var response = await client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            down = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            return response.StatusCode == HttpStatusCode.ServiceUnavailable;
        }, TimeSpan.FromSeconds(30));
        Assert.That(unhealthy, Is.True, () => $"/health/ready stayed healthy with the broker gone: {down}");
        var rabbit = down.GetProperty("checks").GetProperty("rabbitmq");
        Assert.Multiple(() =>
        {
            Assert.That(rabbit.GetProperty("status").GetString(), Is.EqualTo("Unhealthy"));
            Assert.That(rabbit.GetProperty("description").GetString(), Does.StartWith("RabbitMQ unreachable at"), "the reason must be reported");
        });

        proxy.Reconnect();
        Assert.That(await ReadyStatusBecomes(client, HttpStatusCode.OK, TimeSpan.FromSeconds(60)), Is.True, "host did not recover when the broker came back");
    }

    static async Task<bool> ReadyStatusBecomes(HttpClient client, HttpStatusCode expected, TimeSpan? timeout = null) =>
        await Eventually.TrueAsync(async () =>
        {
            using var response = await client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            return response.StatusCode == expected;
        }, timeout ?? TimeSpan.FromSeconds(30));

    static int ClosedPort()
    {
        var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    [Test]
    public async Task When_host_runs_should_serve_prometheus_metrics()
    {
        await using var host = await TestHost.StartAsync("host", configure: options => options.ReadinessPath = null);
        var client = host.Client;

        using var response = await client.GetAsync(new Uri("/metrics", UriKind.Relative));
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }
}
