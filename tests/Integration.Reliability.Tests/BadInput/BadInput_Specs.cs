using System.Text.Json;
using Integration.Reliability.Tests.Support;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.BadInput;

/// <summary>
/// Bad input on the host's MassTransit endpoints and on the parts route, in the cases the pattern and host specs do not
/// already cover (docs/reliability.md maps every case to its spec): each bad message ends in the endpoint's error (or
/// skipped) queue with the reason in its headers, and a valid message sent after it is still consumed.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class BadInput_Specs
{
    const string Warehouse = "fulfillment-warehouse";
    const string MassTransitJson = "application/vnd.masstransit+json";

    InProcessHost _host = null!;
    string _reserved = null!;

    [OneTimeSetUp]
    public async Task StartHost()
    {
        _host = await InProcessHost.StartAsync("bad-input");
        // What the warehouse publishes for a good ReserveParts: proof that the endpoint kept consuming.
        _reserved = await _host.TapAsync("Integration.Host.Fulfillment:PartsReserved");
    }

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    static string Envelope(string messageId, string messageType, object message) => JsonSerializer.Serialize(new
    {
        messageId,
        messageType = new[] { messageType },
        message,
    });

    static string ReserveParts(Guid orderId, string messageId) =>
        Envelope(messageId, "urn:message:Integration.Host.Fulfillment:ReserveParts", new { orderId, lines = new[] { new { sku = "PUMP-1", quantity = 2 } } });

    /// <summary>Sends a good ReserveParts and waits for the warehouse's PartsReserved for it.</summary>
    async Task AssertStillConsumingAsync(string queue = Warehouse)
    {
        var orderId = Guid.NewGuid();
        await _host.PublishAsync(queue, ReserveParts(orderId, Guid.NewGuid().ToString()), MassTransitJson, Guid.NewGuid().ToString());
        var reserved = await TakeReservedAsync(orderId);
        Assert.That(reserved, Is.True, $"{queue} stopped consuming after the bad message");
    }

    async Task<bool> TakeReservedAsync(Guid orderId, TimeSpan? timeout = null) =>
        await Testing.Eventually.TrueAsync(async () =>
        {
            await using var channel = await _host.Connection.CreateChannelAsync();
            while (await channel.BasicGetAsync(_reserved, autoAck: true) is { } message)
            {
                using var json = JsonDocument.Parse(message.Body);
                if (json.RootElement.GetProperty("message").GetProperty("orderId").GetGuid() == orderId)
                    return true;
            }

            return false;
        }, timeout ?? TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(100));

    async Task<BasicGetResult> DeadLetteredAsync(string queue, string messageId)
    {
        var failed = await _host.TakeAsync(queue, messageId);
        Assert.That(failed, Is.Not.Null, $"message {messageId} did not reach {queue}");
        return failed!;
    }

    [Test]
    public async Task When_a_MassTransit_endpoint_receives_malformed_JSON_should_dead_letter_it_with_the_reason_and_keep_consuming()
    {
        var id = Guid.NewGuid().ToString();
        await _host.PublishAsync(Warehouse, "{ \"messageId\": \"x\", \"message\": { broken", MassTransitJson, id);

        var failed = await DeadLetteredAsync($"{Warehouse}_error", id);
        Assert.That(InProcessHost.Header(failed, "MT-Reason"), Is.EqualTo("fault"));
        Assert.That(InProcessHost.Header(failed, "MT-Fault-ExceptionType"), Does.Contain("Json"));
        Assert.That(InProcessHost.Header(failed, "MT-Fault-Message"), Is.Not.Empty);
        Assert.That(System.Text.Encoding.UTF8.GetString(failed.Body.Span), Does.StartWith("{ \"messageId\""), "the original body is kept");
        await AssertStillConsumingAsync();
    }

    [Test]
    public async Task When_a_MassTransit_endpoint_receives_XML_should_dead_letter_it_with_the_parse_error_and_keep_consuming()
    {
        var id = Guid.NewGuid().ToString();
        // No XML deserializer is registered: MassTransit reads an unknown content type with its default (JSON) deserializer, which fails.
        await _host.PublishAsync(Warehouse, "<reserveParts><orderId>1</orderId></reserveParts>", "application/xml", id);

        var failed = await DeadLetteredAsync($"{Warehouse}_error", id);
        Assert.That(InProcessHost.Header(failed, "MT-Reason"), Is.EqualTo("fault"));
        Assert.That(InProcessHost.Header(failed, "MT-Fault-ExceptionType"), Does.Contain("Json"));
        Assert.That(InProcessHost.Header(failed, "MT-Fault-Message"), Does.Contain("'<' is an invalid start of a value"));
        await AssertStillConsumingAsync();
    }

    [Test]
    public async Task When_a_MassTransit_endpoint_receives_a_valid_envelope_under_a_wrong_content_type_should_read_it_as_JSON_and_consume_it()
    {
        var orderId = Guid.NewGuid();
        var id = Guid.NewGuid().ToString();
        // MassTransit's behaviour, pinned here: an unregistered content type falls back to the default (JSON envelope)
        // deserializer, so a mislabelled but well-formed message is consumed, not dead-lettered (and not lost).
        // Endpoints that must accept one format only clear the others (as UseAesGcmEncryption(requireEncrypted: true) does).
        await _host.PublishAsync(Warehouse, ReserveParts(orderId, id), "text/plain", id);

        Assert.That(await TakeReservedAsync(orderId), Is.True, "the mislabelled envelope was not consumed");
        Assert.That(await _host.Broker.QueueMessageCountAsync($"{Warehouse}_error") ?? 0, Is.Zero);
    }

    [Test]
    public async Task When_a_MassTransit_endpoint_receives_an_unknown_message_type_should_move_it_to_the_skipped_queue_and_keep_consuming()
    {
        var id = Guid.NewGuid().ToString();
        await _host.PublishAsync(Warehouse, Envelope(id, "urn:message:Acme.Legacy:ReservePartsV0", new { orderId = Guid.NewGuid() }), MassTransitJson, id);

        var skipped = await DeadLetteredAsync($"{Warehouse}_skipped", id);
        Assert.That(InProcessHost.Header(skipped, "MT-Reason"), Is.EqualTo("dead-letter"), "the reason header says why it was moved");
        Assert.That(await _host.Broker.QueueMessageCountAsync($"{Warehouse}_error") ?? 0, Is.Zero, "an unknown type is not a fault");
        await AssertStillConsumingAsync();
    }

    [Test]
    public async Task When_a_MassTransit_message_misses_required_fields_should_dead_letter_it_with_the_exception_and_keep_consuming()
    {
        var id = Guid.NewGuid().ToString();
        // ReserveParts without its lines.
        await _host.PublishAsync(Warehouse, Envelope(id, "urn:message:Integration.Host.Fulfillment:ReserveParts", new { orderId = Guid.NewGuid() }), MassTransitJson, id);

        var failed = await DeadLetteredAsync($"{Warehouse}_error", id);
        Assert.That(InProcessHost.Header(failed, "MT-Reason"), Is.EqualTo("fault"));
        Assert.That(InProcessHost.Header(failed, "MT-Fault-ExceptionType"), Is.Not.Empty);
        Assert.That(InProcessHost.Header(failed, "MT-Fault-Message"), Is.Not.Empty);
        await AssertStillConsumingAsync();
    }

    [Test]
    public async Task When_a_poison_message_always_throws_should_dead_letter_it_after_the_retries_and_keep_the_saga_consuming()
    {
        var poison = Guid.NewGuid().ToString();
        // OrderSubmitted without lines: the saga throws on every attempt (retries 100 ms, 0.5 s, 1 s, 2 s, 5 s), then gives up.
        await _host.PublishAsync("order-fulfillment", Envelope(poison, "urn:message:Integration.Host.Contracts:OrderSubmitted",
            new { orderId = Guid.NewGuid(), deviceId = "truck-1", region = "north", submittedAt = DateTimeOffset.UtcNow }), MassTransitJson, poison);
        var good = Guid.NewGuid();
        await _host.PublishAsync("order-fulfillment", Envelope(Guid.NewGuid().ToString(), "urn:message:Integration.Host.Contracts:OrderSubmitted",
            new { orderId = good, deviceId = "truck-1", region = "north", lines = new[] { new { sku = "PUMP-1", quantity = 1 } }, submittedAt = DateTimeOffset.UtcNow }),
            MassTransitJson, Guid.NewGuid().ToString());

        Assert.That(await TakeReservedAsync(good), Is.True, "the saga stopped consuming behind the poison message");
        var failed = await _host.TakeAsync("order-fulfillment_error", poison, TimeSpan.FromSeconds(30));
        Assert.That(failed, Is.Not.Null, "the poison message was not dead-lettered");
        Assert.That(InProcessHost.Header(failed!, "MT-Reason"), Is.EqualTo("fault"));
        Assert.That(InProcessHost.Header(failed!, "MT-Fault-RetryCount"), Is.EqualTo("5"), "it is retried before it is given up");
        Assert.That(InProcessHost.Header(failed!, "MT-Fault-Message"), Is.Not.Empty);
    }

    [Test]
    public async Task When_a_parts_request_has_a_non_JSON_content_type_should_dead_letter_it_and_keep_routing()
    {
        var id = Guid.NewGuid().ToString();
        await _host.PublishAsync("parts-requests", "requestId=r1&category=electronics", "application/x-www-form-urlencoded", id);
        var nextId = Guid.NewGuid().ToString();
        var requestId = Guid.NewGuid().ToString();
        await _host.PublishAsync("parts-requests", JsonSerializer.Serialize(new { requestId, deviceId = "truck-9", category = "hydraulics", sku = "S", quantity = 1 }),
            "application/json", nextId);

        var failed = await DeadLetteredAsync("parts-requests_error", id);
        Assert.That(InProcessHost.Header(failed, "MT-Fault-Message"), Is.Not.Empty);
        Assert.That(await RoutedAsync("parts-hydraulics", requestId), Is.True, "the route stopped after the bad message");
    }

    [Test]
    public async Task When_a_parts_request_misses_its_request_id_should_dead_letter_it_and_keep_routing_the_next()
    {
        var id = Guid.NewGuid().ToString();
        await _host.PublishAsync("parts-requests", JsonSerializer.Serialize(new { deviceId = "truck-9", category = "electronics" }), "application/json", id);
        var requestId = Guid.NewGuid().ToString();
        await _host.PublishAsync("parts-requests", JsonSerializer.Serialize(new { requestId, deviceId = "truck-9", category = "electronics", sku = "S", quantity = 1 }),
            "application/json", Guid.NewGuid().ToString());

        var failed = await DeadLetteredAsync("parts-requests_error", id);
        Assert.That(InProcessHost.Header(failed, "MT-Fault-Message"), Does.Contain("requestId is required"));
        Assert.That(await RoutedAsync("parts-electronics", requestId), Is.True, "the route stopped after the bad message");
    }

    async Task<bool> RoutedAsync(string queue, string requestId) =>
        await Testing.Eventually.TrueAsync(async () =>
        {
            await using var channel = await _host.Connection.CreateChannelAsync();
            try
            {
                while (await channel.BasicGetAsync(queue, autoAck: true) is { } message)
                {
                    using var json = JsonDocument.Parse(message.Body);
                    if (json.RootElement.GetProperty("requestId").GetString() == requestId)
                        return true;
                }
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
            }

            return false;
        }, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(100));
}
