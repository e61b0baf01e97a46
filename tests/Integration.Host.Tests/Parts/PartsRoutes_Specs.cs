using Microsoft.Extensions.DependencyInjection;
using System.Net;
using System.Text;
using System.Text.Json;
using Integration.Host.Tests.Operations;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Parts;

/// <summary>The sample routes on the real host and broker, fed raw JSON by a plain AMQP client as a non-.NET device would.</summary>
[TestFixture]
[Category("Integration")]
public sealed class PartsRoutes_Specs
{
    ControlHost _host = null!;
    IConnection _connection = null!;

    [SetUp]
    public async Task StartHost()
    {
        _host = await ControlHost.StartAsync("parts");
        _connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
    }

    [TearDown]
    public async Task StopHost()
    {
        await _connection.DisposeAsync();
        await _host.DisposeAsync();
    }

    async Task Publish(string body)
    {
        await using var channel = await _connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties { ContentType = "application/json", Persistent = true, MessageId = Guid.NewGuid().ToString() };
        await channel.BasicPublishAsync("", "parts-requests", mandatory: true, properties, Encoding.UTF8.GetBytes(body));
    }

    async Task<BasicGetResult?> Take(string queue, TimeSpan? timeout = null)
    {
        BasicGetResult? result = null;
        await Eventually.TrueAsync(async () =>
        {
            await using var channel = await _connection.CreateChannelAsync();
            try
            {
                result = await channel.BasicGetAsync(queue, autoAck: true);
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
                return false;
            }

            return result is not null;
        }, timeout ?? TimeSpan.FromSeconds(15));
        return result;
    }

    static string Header(BasicGetResult message, string name) =>
        message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), _ => value?.ToString() ?? "" }
            : "";

    static JsonElement Body(BasicGetResult message) => JsonDocument.Parse(message.Body).RootElement.Clone();

    static string Request(string requestId, string deviceId, string category) =>
        JsonSerializer.Serialize(new { requestId, deviceId, category, sku = "SKU-1", quantity = 2 });

    [Test]
    public async Task When_the_host_starts_should_declare_every_destination_queue()
    {
        foreach (var queue in new[] { "audit", "parts-requests-discarded", "parts-electronics", "parts-hydraulics", "parts-general" })
        {
            Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync(queue) is not null, TimeSpan.FromSeconds(15)),
                Is.True, $"queue {queue} was not declared");
        }
    }

    [TestCase("electronics", "parts-electronics")]
    [TestCase("hydraulics", "parts-hydraulics")]
    [TestCase("brakes", "parts-general")]
    public async Task When_a_request_arrives_should_route_it_by_category_with_its_history_and_tap_it_to_audit(string category, string destination)
    {
        var id = Guid.NewGuid().ToString();

        await Publish(Request(id, "truck-7", category));

        var routed = await Take(destination);
        Assert.That(routed, Is.Not.Null, $"nothing reached {destination}");
        Assert.That(Body(routed!).GetProperty("requestId").GetString(), Is.EqualTo(id));
        var history = JsonDocument.Parse(Header(routed!, "Integration-History")).RootElement.EnumerateArray().Select(e => e.GetProperty("step").GetString()).ToList();
        Assert.That(history, Is.EqualTo(new[] { "wiretap:audit", "validate", "filter:parts-requests-discarded", "route:by-category" }));

        var audit = await Take("audit");
        Assert.That(audit, Is.Not.Null, "no copy in audit");
        Assert.That(Body(audit!).GetProperty("requestId").GetString(), Is.EqualTo(id));
    }

    [Test]
    public async Task When_the_device_is_a_test_device_should_discard_it_to_its_queue()
    {
        var id = Guid.NewGuid().ToString();

        await Publish(Request(id, "test-bench-1", "electronics"));

        var discarded = await Take("parts-requests-discarded");
        Assert.That(discarded, Is.Not.Null);
        Assert.That(Body(discarded!).GetProperty("requestId").GetString(), Is.EqualTo(id));
        Assert.That(await _host.Broker.QueueMessageCountAsync("parts-electronics"), Is.Zero);
    }

    [Test]
    public async Task When_the_body_is_not_json_should_dead_letter_it_with_the_reason_and_keep_routing()
    {
        await Publish("{ this is not json");
        var next = Guid.NewGuid().ToString();
        await Publish(Request(next, "truck-1", "hydraulics"));

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null, "the malformed message was not dead-lettered");
        Assert.That(Encoding.UTF8.GetString(failed!.Body.Span), Is.EqualTo("{ this is not json"), "the original body must be kept");
        Assert.That(Header(failed, "MT-Fault-Message"), Is.Not.Empty, "the reason must be in the headers");
        var routed = await Take("parts-hydraulics");
        Assert.That(routed, Is.Not.Null, "the route stopped after a bad message");
        Assert.That(Body(routed!).GetProperty("requestId").GetString(), Is.EqualTo(next));
    }

    [Test]
    public async Task When_request_id_is_missing_should_dead_letter_it_saying_so()
    {
        await Publish(JsonSerializer.Serialize(new { deviceId = "truck-2", category = "electronics", sku = "S", quantity = 1 }));

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null);
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("requestId is required"));
        Assert.That(await _host.Broker.QueueMessageCountAsync("parts-electronics"), Is.Zero);
    }

    [Test]
    public async Task When_the_body_is_over_the_size_limit_should_dead_letter_it_saying_so_and_keep_routing()
    {
        var oversized = JsonSerializer.Serialize(new { requestId = "big", deviceId = "truck-5", category = "electronics", sku = new string('x', 70_000), quantity = 1 });
        await Publish(oversized);
        var next = Guid.NewGuid().ToString();
        await Publish(Request(next, "truck-5", "electronics"));

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null, "the oversized message was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("over the limit of 65536"));
        var routed = await Take("parts-electronics");
        Assert.That(Body(routed!).GetProperty("requestId").GetString(), Is.EqualTo(next), "the route stopped after an oversized message");
    }

    [Test]
    public async Task When_the_body_is_xml_should_dead_letter_it_and_keep_routing()
    {
        await Publish("<partsRequest><requestId>x1</requestId></partsRequest>");
        var next = Guid.NewGuid().ToString();
        await Publish(Request(next, "truck-6", "hydraulics"));

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null);
        Assert.That(Header(failed!, "MT-Fault-ExceptionType"), Does.Contain("JsonReaderException"));
        Assert.That(Header(failed!, "MT-Fault-Message"), Is.Not.Empty);
        Assert.That(Body((await Take("parts-hydraulics"))!).GetProperty("requestId").GetString(), Is.EqualTo(next));
    }

    [Test]
    public async Task When_an_operator_replaces_the_routing_table_should_route_by_the_new_table_at_once()
    {
        var (status, _) = await _host.Send(HttpMethod.Put, "/api/control/routes/parts-requests/tables/by-category", ControlHost.OperatorKey,
            new { keys = new Dictionary<string, string> { ["electronics"] = "parts-hydraulics" }, otherwise = "parts-general" });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));

        var id = Guid.NewGuid().ToString();
        await Publish(Request(id, "truck-3", "electronics"));

        var routed = await Take("parts-hydraulics");
        Assert.That(routed, Is.Not.Null, "electronics should now go to parts-hydraulics");
        Assert.That(Body(routed!).GetProperty("requestId").GetString(), Is.EqualTo(id));
    }

    [Test]
    public async Task When_a_replacement_table_has_no_otherwise_should_refuse_it_and_keep_the_old_one()
    {
        var (status, body) = await _host.Send(HttpMethod.Put, "/api/control/routes/parts-requests/tables/by-category", ControlHost.OperatorKey,
            new { keys = new Dictionary<string, string> { ["electronics"] = "parts-hydraulics" } });

        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain("Otherwise"));
        await Publish(Request(Guid.NewGuid().ToString(), "truck-4", "electronics"));
        Assert.That(await Take("parts-electronics"), Is.Not.Null, "the old table must still be in force");
    }

    [Test]
    public async Task When_an_operator_changes_the_rate_limit_should_throttle_at_the_new_rate_and_list_it()
    {
        var (status, _) = await _host.Send(HttpMethod.Put, "/api/control/routes/parts-requests/rate-limit", ControlHost.OperatorKey, new { messages = 5 });
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var (_, routes) = await _host.Send(HttpMethod.Get, "/api/control/routes", ControlHost.ViewerKey);
        var parts = routes.GetProperty("data").GetProperty("routes").EnumerateArray().Single(r => r.GetProperty("route").GetString() == "parts-requests");
        Assert.That(parts.GetProperty("rateLimit").GetProperty("messages").GetInt32(), Is.EqualTo(5));

        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 6; i++)
            await Publish(Request(Guid.NewGuid().ToString(), "truck-8", "electronics"));

        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("parts-electronics") == 6, TimeSpan.FromSeconds(20)), Is.True,
            "every throttled request must still be routed");
        Assert.That(stopwatch.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(900)), "6 requests at 5/s need 5 spacings of 200 ms");
    }

    [Test]
    public async Task When_a_rate_limit_change_is_wrong_or_not_allowed_should_refuse_it_and_keep_the_old_one()
    {
        var (viewer, _) = await _host.Send(HttpMethod.Put, "/api/control/routes/parts-requests/rate-limit", ControlHost.ViewerKey, new { messages = 1 });
        var (zero, zeroBody) = await _host.Send(HttpMethod.Put, "/api/control/routes/parts-requests/rate-limit", ControlHost.OperatorKey, new { messages = 0 });
        var (unknown, unknownBody) = await _host.Send(HttpMethod.Put, "/api/control/routes/nowhere/rate-limit", ControlHost.OperatorKey, new { messages = 10 });

        Assert.Multiple(() =>
        {
            Assert.That(viewer, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(zero, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(zeroBody.GetProperty("detail").GetString(), Does.Contain("at least 1 message per interval"));
            Assert.That(unknown, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(unknownBody.GetProperty("detail").GetString(), Does.Contain("Route 'nowhere' has no rate limit; routes with one: parts-requests"));
        });
        var control = _host.Services.GetRequiredService<Integration.Patterns.Routing.RouteControl>();
        Assert.That(control.RateLimits.Single().Messages, Is.EqualTo(Integration.Host.Parts.PartsRoutingFeature.DefaultRateLimitPerSecond));
    }

    [Test]
    public async Task When_routes_are_listed_should_show_the_parts_route_and_its_steps()
    {
        var (status, body) = await _host.Send(HttpMethod.Get, "/api/control/routes", ControlHost.ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var route = body.GetProperty("data").GetProperty("routes").EnumerateArray().Single(r => r.GetProperty("route").GetString() == "parts-requests");
        Assert.That(route.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("kind").GetString()),
            Is.EqualTo(new[] { "WireTap", "Validate", "Filter", "Route" }));
    }
}
