using System.Net;
using System.Text;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary><c>/metrics</c> after real traffic: MassTransit's message counters and durations, the outbox backlog, dead letters per queue, saga instances by state, the circuit breaker.</summary>
[TestFixture]
[Category("Integration")]
public sealed class OperationsMetrics_Specs
{
    ControlProcess _host = null!;

    [SetUp]
    public async Task StartHost() => _host = await ControlProcess.StartAsync("metrics");

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    [Test]
    public async Task When_messages_flow_and_fail_should_export_every_operational_metric()
    {
        await using (var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device"))
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true)))
        {
            // No requestId: the route rejects it to parts-requests_error, a dead letter.
            await channel.BasicPublishAsync("", "parts-requests", mandatory: true, new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() },
                Encoding.UTF8.GetBytes("""{"deviceId":"truck-1","category":"electronics","sku":"S","quantity":1}"""));
        }

        await _host.SubmitOrder();
        using var stock = await _host.Client.GetAsync(new Uri("/api/stock/SKU-1", UriKind.Relative));
        Assert.That(stock.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        (string Name, string[] Labels, string? Value)[] expected =
        [
            ("messaging_masstransit_receive_duration_milliseconds_count", [], null), ("messaging_masstransit_consume_ea_total", [], null),
            ("messaging_masstransit_consume_duration_milliseconds_bucket", [], null), ("messaging_masstransit_handler_errors_ea_total", ["MessageRejectedException"], null),
            ("messaging_masstransit_send_ea_total", [], null),
            ("integration_outbox_backlog", [], null), ("integration_dead_letters", ["queue=\"parts-requests_error\""], "1"),
            ("integration_saga_instances", ["saga=\"order-fulfillment\"", "state="], null),
            ("integration_circuit_breaker_state", ["proxy=\"stock-levels\""], "0"), ("integration_smart_proxy_pending", ["proxy=\"stock-levels\""], "0"),
            ("integration_smart_proxy_calls_total", ["outcome=\"ok\""], null), ("integration_message_store_stored_total", [], null),
            ("integration_queue_depth", ["queue=\"parts-requests\""], null),
        ];
        var metrics = "";
        await Eventually.TrueAsync(async () =>
        {
            metrics = await _host.Client.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            return expected.All(e => Has(metrics, e.Name, e.Labels, e.Value));
        }, TimeSpan.FromSeconds(20));
        TestContext.Out.WriteLine(string.Join('\n', metrics.Split('\n').Where(l => l.StartsWith("integration_", StringComparison.Ordinal) || l.StartsWith("messaging_", StringComparison.Ordinal)).Where(l => !l.Contains("_bucket{", StringComparison.Ordinal))));
        Assert.Multiple(() =>
        {
            foreach (var (name, labels, value) in expected)
                Assert.That(Has(metrics, name, labels, value), Is.True, $"{name}{{{string.Join(",", labels)}}} {value}");
        });
    }

    /// <summary>A sample of <paramref name="name"/> with every label fragment, and the value when given.</summary>
    internal static bool Has(string metrics, string name, IEnumerable<string> labels, string? value) =>
        metrics.Split('\n').Any(line => (line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal))
            && labels.All(line.Contains) && (value is null || line.EndsWith(" " + value, StringComparison.Ordinal)));
}
