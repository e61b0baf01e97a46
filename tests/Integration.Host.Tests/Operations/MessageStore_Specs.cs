using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Operations;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary>The message store on the real host: the parts route's outputs and the order events are kept with headers and history, found, and replayed without loss.</summary>
[TestFixture]
[Category("Integration")]
public sealed class MessageStore_Specs
{
    ControlHost _host = null!;
    IConnection _connection = null!;

    [SetUp]
    public async Task StartHost()
    {
        _host = await ControlHost.StartAsync("store");
        _connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
    }

    [TearDown]
    public async Task StopHost()
    {
        await _connection.DisposeAsync();
        await _host.DisposeAsync();
    }

    async Task PublishPartsRequest(string requestId, string category)
    {
        await using var channel = await _connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var body = JsonSerializer.Serialize(new { requestId, deviceId = "truck-7", category, sku = "SKU-1", quantity = 2 });
        var properties = new BasicProperties { ContentType = "application/json", Persistent = true, MessageId = Guid.NewGuid().ToString() };
        await channel.BasicPublishAsync("", "parts-requests", mandatory: true, properties, Encoding.UTF8.GetBytes(body));
    }

    async Task<List<JsonElement>> Find(string query, string key = ControlHost.ViewerKey)
    {
        var (status, body) = await _host.Send(HttpMethod.Get, $"/api/control/messages?{query}", key);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        return body.GetProperty("data").EnumerateArray().ToList();
    }

    async Task<List<JsonElement>> FindEventually(string query, int count)
    {
        List<JsonElement> found = [];
        await Eventually.TrueAsync(async () => (found = await Find(query)).Count >= count, TimeSpan.FromSeconds(20));
        Assert.That(found, Has.Count.EqualTo(count), $"stored messages for {query}");
        return found;
    }

    static string? TraceOf(JsonElement stored) =>
        stored.GetProperty("headers").TryGetProperty("MT-Activity-Id", out var activity) ? activity.GetString()?.Split('-')[1] : null;

    [Test]
    public async Task When_the_dashboard_asks_for_journeys_should_group_a_requests_copies_into_one()
    {
        await WaitForStoreQueue();
        var requestId = Guid.NewGuid().ToString();
        await PublishPartsRequest(requestId, "electronics");
        await FindEventually("exchange=parts-electronics", 1);
        await FindEventually("exchange=audit", 1);

        var (status, body) = await _host.Send(HttpMethod.Get, "/api/control/overview", ControlHost.ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var journeys = body.GetProperty("data").GetProperty("journeys").EnumerateArray().ToList();
        Assert.That(journeys, Has.Count.EqualTo(1));
        Assert.That(journeys[0].GetProperty("hops").EnumerateArray().Select(h => h.GetProperty("exchange").GetString()),
            Is.EquivalentTo(new[] { "audit", "parts-electronics" }));
    }

    async Task WaitForStoreQueue() =>
        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("message-store") is not null, TimeSpan.FromSeconds(15)), Is.True,
            "the message-store queue was never declared");

    [Test]
    public async Task When_parts_requests_are_routed_should_store_each_output_with_its_headers_and_history()
    {
        await WaitForStoreQueue();
        var requestId = Guid.NewGuid().ToString();

        await PublishPartsRequest(requestId, "electronics");

        var routed = await FindEventually("exchange=parts-electronics", 1);
        var audit = await FindEventually("exchange=audit", 1);
        Assert.Multiple(() =>
        {
            Assert.That(routed[0].GetProperty("bodyPreview").GetString(), Does.Contain(requestId));
            Assert.That(routed[0].GetProperty("history").EnumerateArray().Select(h => h.GetProperty("step").GetString()),
                Is.EqualTo(new[] { "wiretap:audit", "validate", "filter:parts-requests-discarded", "route:by-category" }));
            Assert.That(routed[0].GetProperty("headers").TryGetProperty("Integration-History", out _), Is.True, "headers are kept");
            Assert.That(audit[0].GetProperty("bodyPreview").GetString(), Does.Contain(requestId));
            Assert.That(audit[0].GetProperty("initiatorId").GetString(), Is.Not.Null, "the tapped copy names the request it came from");
            Assert.That(TraceOf(routed[0]), Is.Not.Null.And.EqualTo(TraceOf(audit[0])), "both copies carry the request's trace");
        });
    }

    [Test]
    public async Task When_an_order_is_submitted_should_find_its_event_by_correlation_id_type_and_time()
    {
        await WaitForStoreQueue();
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        var orderId = Guid.NewGuid();

        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative),
            new { orderId, deviceId = "truck-7", region = "north", lines = new[] { new { sku = "SKU-1", quantity = 1 } } });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));

        var byCorrelation = await FindEventually($"correlationId={orderId}&type=OrderSubmitted", 1);
        Assert.Multiple(async () =>
        {
            Assert.That(byCorrelation[0].GetProperty("messageType").GetString(), Does.Contain("OrderSubmitted"));
            Assert.That(byCorrelation[0].GetProperty("exchange").GetString(), Is.EqualTo("Integration.Host.Contracts:OrderSubmitted"));
            Assert.That(await Find($"type=OrderSubmitted&from={Uri.EscapeDataString(before.ToString("O"))}"), Has.Count.EqualTo(1));
            Assert.That(await Find($"type=OrderSubmitted&from={Uri.EscapeDataString(DateTimeOffset.UtcNow.AddHours(1).ToString("O"))}"), Is.Empty);
            Assert.That(await Find($"correlationId={Guid.NewGuid()}"), Is.Empty);
        });
    }

    [Test]
    public async Task When_operator_replays_many_stored_messages_should_deliver_every_one_and_audit_it()
    {
        await WaitForStoreQueue();
        const int count = 25;
        for (var i = 0; i < count; i++)
            await PublishPartsRequest($"replay-{i}", "hydraulics");
        await FindEventually("exchange=parts-hydraulics&take=100", count);
        await using (var channel = await _connection.CreateChannelAsync())
            await channel.QueueDeclareAsync("replay-target", durable: true, exclusive: false, autoDelete: false);

        var (denied, _) = await _host.Send(HttpMethod.Post, "/api/control/messages/replay", ControlHost.ViewerKey,
            new { exchange = "parts-hydraulics", destination = "replay-target", take = 100 });
        var (status, body) = await _host.Send(HttpMethod.Post, "/api/control/messages/replay", ControlHost.OperatorKey,
            new { exchange = "parts-hydraulics", destination = "replay-target", take = 100 });

        Assert.That(denied, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), body.ToString());
        Assert.That(body.GetProperty("data").GetProperty("replayed").GetInt32(), Is.EqualTo(count));
        Assert.That(await _host.Broker.QueueMessageCountAsync("replay-target"), Is.EqualTo(count), "every replayed message is in the destination, confirmed");
        var received = new HashSet<string>();
        await using (var channel = await _connection.CreateChannelAsync())
        {
            while (await channel.BasicGetAsync("replay-target", autoAck: true) is { } message)
            {
                received.Add(JsonDocument.Parse(message.Body).RootElement.GetProperty("requestId").GetString()!);
                Assert.That(message.BasicProperties.Headers!.ContainsKey("Integration-History"), Is.True, "headers are replayed");
            }
        }

        Assert.That(received, Is.EquivalentTo(Enumerable.Range(0, count).Select(i => $"replay-{i}")));
        var audit = await _host.Audit();
        Assert.That(audit.Where(a => a.Action == "messages.replay").Select(a => a.Outcome), Is.EquivalentTo(new[] { "ok", "denied" }));
    }

    [Test]
    public async Task When_replay_comes_over_rabbitmq_should_need_an_operator_key_and_deliver()
    {
        await WaitForStoreQueue();
        await PublishPartsRequest("amqp-replay", "brakes");
        var stored = await FindEventually("exchange=parts-general", 1);
        await using (var channel = await _connection.CreateChannelAsync())
            await channel.QueueDeclareAsync("amqp-replay-target", durable: true, exclusive: false, autoDelete: false);
        var client = _host.Services.GetRequiredService<IBus>().CreateRequestClient<ControlCommandMessage>();
        var command = new ControlCommandMessage("messages.replay", "amqp-replay-target",
            new Dictionary<string, string> { ["ids"] = stored[0].GetProperty("id").GetInt64().ToString(System.Globalization.CultureInfo.InvariantCulture) });

        var denied = await client.GetResponse<ControlCommandReply>(command, x => x.UseExecute(send => send.Headers.Set(ControlCommandMessage.KeyHeader, ControlHost.ViewerKey)));
        var done = await client.GetResponse<ControlCommandReply>(command, x => x.UseExecute(send => send.Headers.Set(ControlCommandMessage.KeyHeader, ControlHost.OperatorKey)));

        Assert.That(denied.Message.Outcome, Is.EqualTo("Denied"));
        Assert.That(done.Message.Outcome, Is.EqualTo("Ok"), done.Message.Message);
        Assert.That(await _host.Broker.QueueMessageCountAsync("amqp-replay-target"), Is.EqualTo(1));
        Assert.That((await _host.Audit()).Where(a => a.Action == "messages.replay" && a.Channel == "amqp").Select(a => a.Outcome), Is.EquivalentTo(new[] { "ok", "denied" }));
    }

    [Test]
    public async Task When_the_broker_redelivers_a_stored_message_should_keep_one_copy()
    {
        var store = _host.Services.GetRequiredService<MessageStore>();
        var correlation = Guid.NewGuid().ToString();
        StoredMessage Copy() => new()
        {
            StoredAt = DateTimeOffset.UtcNow, Exchange = "audit", MessageId = "redelivered-1", CorrelationId = correlation,
            MessageType = "urn:message:Test:Redelivered", ContentType = "application/json", Headers = "{\"x\":\"1\"}", Body = Encoding.UTF8.GetBytes("{}"),
        };

        await store.AddAsync(Copy(), CancellationToken.None);
        await store.AddAsync(Copy(), CancellationToken.None);

        var found = await store.FindAsync(new MessageQuery(correlation, null, null, null, null), CancellationToken.None);
        Assert.That(found, Has.Count.EqualTo(1), "a redelivery (same message id, same exchange) is stored once");
        Assert.That(found[0].Headers, Does.Contain("\"x\""));
    }

    [Test]
    public async Task When_no_key_is_given_should_refuse_to_list_or_replay()
    {
        var (list, _) = await _host.Send(HttpMethod.Get, "/api/control/messages", key: null);
        var (replay, _) = await _host.Send(HttpMethod.Post, "/api/control/messages/replay", key: null, new { exchange = "audit", destination = "audit" });
        var (everything, _) = await _host.Send(HttpMethod.Post, "/api/control/messages/replay", ControlHost.OperatorKey, new { destination = "audit" });

        Assert.Multiple(() =>
        {
            Assert.That(list, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(replay, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(everything, Is.EqualTo(HttpStatusCode.BadRequest), "replaying the whole store needs a filter");
        });
    }
}
