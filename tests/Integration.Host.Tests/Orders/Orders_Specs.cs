using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Integration.Host.Contracts;
using Integration.Host.Tests.Operations;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;

namespace Integration.Host.Tests.Orders;

/// <summary>The orders API on the real host: stored and published through the outbox in one transaction.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Orders_Specs
{
    ControlHost _host = null!;
    readonly ConcurrentQueue<ConsumeContext<OrderSubmitted>> _submitted = new();

    [SetUp]
    public async Task StartHost()
    {
        _submitted.Clear();
        _host = await ControlHost.StartAsync("orders");
        await _host.ConnectEndpoint("test-order-submitted", e => e.Handler<OrderSubmitted>(context =>
        {
            _submitted.Enqueue(context);
            return Task.CompletedTask;
        }));
    }

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    static object ValidOrder(Guid? orderId = null) => new
    {
        orderId,
        deviceId = "truck-7",
        region = "north",
        lines = new[] { new { sku = "PUMP-1", quantity = 2 }, new { sku = "HOSE-3", quantity = 5 } },
    };

    [Test]
    public async Task When_an_order_is_posted_should_store_it_and_publish_order_submitted_through_the_outbox()
    {
        var (status, body) = await _host.Send(HttpMethod.Post, "/api/orders", key: null, ValidOrder());

        Assert.That(status, Is.EqualTo(HttpStatusCode.Accepted));
        var orderId = body.GetProperty("orderId").GetGuid();
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_submitted.Any(s => s.Message.OrderId == orderId)), TimeSpan.FromSeconds(15)), Is.True,
            "OrderSubmitted never reached a consumer");
        var submitted = _submitted.Single(s => s.Message.OrderId == orderId);
        Assert.That(submitted.Message.Lines, Has.Count.EqualTo(2));
        Assert.That(submitted.CorrelationId, Is.EqualTo(orderId));

        var (getStatus, order) = await _host.Send(HttpMethod.Get, $"/api/orders/{orderId}", key: null);
        Assert.That(getStatus, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(order.GetProperty("orderId").GetGuid(), Is.EqualTo(orderId));
        // "Submitted" until the fulfillment saga starts, then the saga's state (docs/sagas.md); the happy path ends "Completed".
        Assert.That(order.GetProperty("status").GetString(), Does.Match("^(Submitted|Reserving|CreatingPurchaseOrder|UpdatingInventory|Completed)$"));
        Assert.That(order.GetProperty("steps").ValueKind, Is.EqualTo(JsonValueKind.Array));
    }

    [Test]
    public async Task When_the_same_order_id_is_posted_again_should_create_nothing_new()
    {
        var orderId = Guid.NewGuid();

        var (first, _) = await _host.Send(HttpMethod.Post, "/api/orders", key: null, ValidOrder(orderId));
        var (second, body) = await _host.Send(HttpMethod.Post, "/api/orders", key: null, ValidOrder(orderId));

        Assert.That(first, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That(second, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That(body.GetProperty("orderId").GetGuid(), Is.EqualTo(orderId));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_submitted.Any(s => s.Message.OrderId == orderId)), TimeSpan.FromSeconds(15)), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(_submitted.Count(s => s.Message.OrderId == orderId), Is.EqualTo(1), "a second OrderSubmitted was published");
    }

    [TestCase("""{"region":"north","lines":[{"sku":"A","quantity":1}]}""", "deviceId")]
    [TestCase("""{"deviceId":"d","lines":[{"sku":"A","quantity":1}]}""", "region")]
    [TestCase("""{"deviceId":"d","region":"north","lines":[]}""", "lines")]
    [TestCase("""{"deviceId":"d","region":"north","lines":[{"sku":"","quantity":1}]}""", "lines[0].sku")]
    [TestCase("""{"deviceId":"d","region":"north","lines":[{"sku":"A","quantity":0}]}""", "lines[0].quantity")]
    public async Task When_the_order_is_invalid_should_answer_400_naming_the_field_and_store_nothing(string json, string field)
    {
        using var content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        using var response = await _host.Client.PostAsync(new Uri("/api/orders", UriKind.Relative), content);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("errors").TryGetProperty(field, out _), Is.True, () => $"errors: {body}");
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.That(_submitted, Is.Empty, "nothing may be published for an invalid order");
    }

    [Test]
    public async Task When_the_body_is_not_json_should_answer_400()
    {
        using var content = new StringContent("{ nope", System.Text.Encoding.UTF8, "application/json");
        using var response = await _host.Client.PostAsync(new Uri("/api/orders", UriKind.Relative), content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task When_the_order_is_unknown_should_answer_404()
    {
        var (status, _) = await _host.Send(HttpMethod.Get, $"/api/orders/{Guid.NewGuid()}", key: null);

        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound));
    }
}
