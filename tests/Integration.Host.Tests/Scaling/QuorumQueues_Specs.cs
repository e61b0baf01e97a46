using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Host.Tests.Operations;
using Integration.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Scaling;

/// <summary>
/// <c>Integration:RabbitMq:QueueType=Quorum</c> on a fresh virtual host: every queue the host declares is a quorum queue,
/// and the sample routes and saga work as they do on classic queues (docs/scaling.md).
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class QuorumQueues_Specs
{
    ControlHost _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() =>
        _host = await ControlHost.StartAsync("quorum", new Dictionary<string, string?> { ["Integration:RabbitMq:QueueType"] = "Quorum" });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    async Task<List<(string Name, string Type)>> Queues()
    {
        var management = _host.Services.GetRequiredService<IOptions<RabbitMqOptions>>().Value.EffectiveManagementUri;
        using var client = new HttpClient { BaseAddress = management };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{_host.Broker.Username}:{_host.Broker.Password}")));
        var queues = await client.GetFromJsonAsync<JsonElement>($"api/queues/{Uri.EscapeDataString(_host.Broker.VirtualHost)}?columns=name,type");
        return queues.EnumerateArray().Select(q => (q.GetProperty("name").GetString()!, q.GetProperty("type").GetString()!)).ToList();
    }

    async Task<string?> OrderStatus(Guid orderId)
    {
        var (status, order) = await _host.Send(HttpMethod.Get, $"/api/orders/{orderId}", key: null);
        return status == HttpStatusCode.OK ? order.GetProperty("status").GetString() : null;
    }

    [Test]
    public async Task Should_declare_only_quorum_queues_and_run_the_routes_and_the_saga_unchanged()
    {
        // The saga: the happy path and a compensated one.
        var (_, completed) = await _host.Send(HttpMethod.Post, "/api/orders", key: null,
            new { deviceId = "truck-7", region = "north", lines = new[] { new { sku = "PUMP-1", quantity = 2 } } });
        var (_, failed) = await _host.Send(HttpMethod.Post, "/api/orders", key: null,
            new { deviceId = "truck-7", region = "north", lines = new[] { new { sku = "FAIL-INVENTORY-1", quantity = 2 } } });

        // The routes: one routed request, one poison message.
        await using var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true)))
        {
            foreach (var body in new[] { """{"requestId":"r1","deviceId":"truck-1","category":"electronics","sku":"X","quantity":1}""", "not json at all" })
            {
                await channel.BasicPublishAsync("", "parts-requests", mandatory: true,
                    new BasicProperties { ContentType = "application/json", Persistent = true, MessageId = Guid.NewGuid().ToString() }, Encoding.UTF8.GetBytes(body));
            }
        }

        Assert.That(await Eventually.TrueAsync(async () => await OrderStatus(completed.GetProperty("orderId").GetGuid()) == "Completed", TimeSpan.FromSeconds(30)), Is.True,
            "the saga did not complete the order on quorum queues");
        Assert.That(await Eventually.TrueAsync(async () => await OrderStatus(failed.GetProperty("orderId").GetGuid()) == "Failed", TimeSpan.FromSeconds(30)), Is.True,
            "the saga did not compensate the failed order on quorum queues");
        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("parts-electronics") == 1, TimeSpan.FromSeconds(15)), Is.True,
            "the routed request did not reach parts-electronics");
        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("parts-requests_error") == 1, TimeSpan.FromSeconds(15)), Is.True,
            "the poison message did not reach parts-requests_error");

        var queues = await Queues();
        Assert.That(queues.Select(q => q.Name), Is.SupersetOf(new[] { "parts-requests", "parts-requests_error", "parts-electronics", "audit", "order-fulfillment", "integration-host-scheduler" }));
        Assert.That(queues.Where(q => q.Type != "quorum").Select(q => $"{q.Name} ({q.Type})"), Is.Empty, "queues that are not quorum queues");
    }

    [Test]
    public async Task Should_report_the_connected_node_and_the_queue_type_in_the_readiness_data()
    {
        var response = await _host.Client.GetFromJsonAsync<JsonElement>("/health/ready");
        var rabbit = response.GetProperty("checks").GetProperty("rabbitmq");
        Assert.That(rabbit.GetProperty("data").GetProperty("node").GetString(), Is.EqualTo($"{_host.Broker.Host}:{_host.Broker.Port}"));
        Assert.That(rabbit.GetProperty("data").GetProperty("queueType").GetString(), Is.EqualTo("Quorum"));
    }
}
