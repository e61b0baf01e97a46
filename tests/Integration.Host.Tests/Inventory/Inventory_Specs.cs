using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Integration.Host.Contracts;
using Integration.Host.Tests.Operations;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Inventory;

/// <summary>
/// The sample's inventory contract on the real host and broker: raw JSON updates on <c>inventory-updates</c>, applied in
/// batches; <c>GET /api/inventory/{sku}</c>; an <see cref="InventoryUpdated"/> per applied update through the outbox.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class Inventory_Specs
{
    const string Queue = "inventory-updates";
    ControlHost _host = null!;
    IConnection _connection = null!;
    readonly ConcurrentQueue<InventoryUpdated> _updated = new();

    [SetUp]
    public async Task StartHost()
    {
        _updated.Clear();
        _host = await ControlHost.StartAsync("inventory");
        _connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("warehouse-device");
        await _host.ConnectEndpoint("test-inventory-updated", e => e.Handler<InventoryUpdated>(context =>
        {
            _updated.Enqueue(context.Message);
            return Task.CompletedTask;
        }));
    }

    [TearDown]
    public async Task StopHost()
    {
        await _connection.DisposeAsync();
        await _host.DisposeAsync();
    }

    async Task Publish(string body, string? messageId = "new")
    {
        await using var channel = await _connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties { ContentType = "application/json", Persistent = true };
        if (messageId is not null)
            properties.MessageId = messageId == "new" ? Guid.NewGuid().ToString() : messageId;
        await channel.BasicPublishAsync("", Queue, mandatory: true, properties, Encoding.UTF8.GetBytes(body));
    }

    static string Update(string sku, int quantityChange, string location, string deviceId = "warehouse-3") =>
        JsonSerializer.Serialize(new { deviceId, sku, quantityChange, location });

    async Task<BasicGetResult?> Take(string queue)
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
        }, TimeSpan.FromSeconds(20));
        return result;
    }

    static string Header(BasicGetResult message, string name) =>
        message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), _ => value?.ToString() ?? "" }
            : "";

    async Task<JsonElement?> Level(string sku, int quantity)
    {
        JsonElement? level = null;
        await Eventually.TrueAsync(async () =>
        {
            var (status, body) = await _host.Send(HttpMethod.Get, $"/api/inventory/{sku}", key: null);
            level = status == HttpStatusCode.OK ? body : null;
            return level?.GetProperty("quantity").GetInt32() == quantity;
        }, TimeSpan.FromSeconds(20));
        return level;
    }

    [Test]
    public async Task When_updates_arrive_should_apply_them_and_return_the_summed_level_per_location()
    {
        var sku = $"PUMP-{Guid.NewGuid():N}";

        await Publish(Update(sku, 10, "north"));
        await Publish(Update(sku, 5, "south"));
        await Publish(Update(sku, -3, "north"));

        var level = await Level(sku, 12);
        Assert.That(level?.GetProperty("quantity").GetInt32(), Is.EqualTo(12), () => $"GET /api/inventory/{sku}: {level}");
        Assert.That(level!.Value.GetProperty("sku").GetString(), Is.EqualTo(sku));
        var locations = level.Value.GetProperty("locations").EnumerateArray()
            .ToDictionary(l => l.GetProperty("location").GetString()!, l => l.GetProperty("quantity").GetInt32());
        Assert.That(locations, Is.EqualTo(new Dictionary<string, int> { ["north"] = 7, ["south"] = 5 }));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_updated.Count(u => u.Sku == sku) == 3), TimeSpan.FromSeconds(20)), Is.True,
            () => $"InventoryUpdated received: {_updated.Count(u => u.Sku == sku)} of 3");
        Assert.That(_updated.Where(u => u.Sku == sku).Select(u => u.QuantityChange).Order(), Is.EqualTo(new[] { -3, 5, 10 }));
        Assert.That(_updated.Where(u => u.Sku == sku).Max(u => u.Quantity), Is.LessThanOrEqualTo(15));
        Assert.That(_updated.Any(u => u.Sku == sku && u.Quantity == 12), Is.True, "the last update carries the level after it");
    }

    [Test]
    public async Task When_the_sku_is_unknown_should_answer_404()
    {
        var (status, _) = await _host.Send(HttpMethod.Get, $"/api/inventory/NOPE-{Guid.NewGuid():N}", key: null);

        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task When_the_body_is_not_json_should_dead_letter_it_with_the_reason_and_apply_the_rest()
    {
        var sku = $"HOSE-{Guid.NewGuid():N}";

        await Publish("{ this is not json");
        await Publish(Update(sku, 4, "bay-1"));

        var failed = await Take($"{Queue}_error");
        Assert.That(failed, Is.Not.Null, "the malformed message was not dead-lettered");
        Assert.That(Encoding.UTF8.GetString(failed!.Body.Span), Is.EqualTo("{ this is not json"), "the original body must be kept");
        Assert.That(Header(failed, "MT-Fault-Message"), Is.Not.Empty, "the reason must be in the headers");
        Assert.That((await Level(sku, 4))?.GetProperty("quantity").GetInt32(), Is.EqualTo(4), "the valid update after it was not applied");
    }

    [TestCase("""{"deviceId":"w-1","quantityChange":2,"location":"bay-1"}""", "sku")]
    [TestCase("""{"deviceId":"w-1","sku":"VALVE-9","location":"bay-1"}""", "quantityChange")]
    [TestCase("""{"sku":"VALVE-9","quantityChange":2,"location":"bay-1"}""", "deviceId")]
    [TestCase("""{"deviceId":"w-1","sku":"VALVE-9","quantityChange":2}""", "location")]
    public async Task When_a_field_is_missing_should_dead_letter_it_naming_the_field(string body, string field)
    {
        var sku = $"VALVE-{Guid.NewGuid():N}";

        await Publish(body);
        await Publish(Update(sku, 1, "bay-2"));

        var failed = await Take($"{Queue}_error");
        Assert.That(failed, Is.Not.Null, "the incomplete message was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("missing").And.Contain(field));
        Assert.That((await Level(sku, 1))?.GetProperty("quantity").GetInt32(), Is.EqualTo(1), "the rest of the batch must commit");
        var (status, _) = await _host.Send(HttpMethod.Get, "/api/inventory/VALVE-9", key: null);
        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound), "the incomplete update must not be applied");
    }

    [Test]
    public async Task When_one_update_of_a_batch_cannot_be_applied_should_dead_letter_only_it_and_commit_the_rest()
    {
        var full = $"BIN-{Guid.NewGuid():N}";
        var other = $"NUT-{Guid.NewGuid():N}";

        // The second update overflows the level (integer out of range): valid on its face, it fails only when applied.
        await Publish(Update(full, int.MaxValue, "rack"));
        await Publish(Update(full, 1, "rack"));
        await Publish(Update(other, 8, "rack"));

        var failed = await Take($"{Queue}_error");
        Assert.That(failed, Is.Not.Null, "the update that cannot be applied was not dead-lettered");
        Assert.That(JsonDocument.Parse(failed!.Body).RootElement.GetProperty("quantityChange").GetInt32(), Is.EqualTo(1), "only the overflowing update fails");
        Assert.That(Header(failed, "MT-Fault-Message"), Is.Not.Empty, "the reason must be in the headers");
        Assert.That((await Level(full, int.MaxValue))?.GetProperty("quantity").GetInt32(), Is.EqualTo(int.MaxValue));
        Assert.That((await Level(other, 8))?.GetProperty("quantity").GetInt32(), Is.EqualTo(8), "the rest of the batch must commit");
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_updated.Count(u => u.Sku == full || u.Sku == other) == 2), TimeSpan.FromSeconds(20)), Is.True,
            "the applied updates publish InventoryUpdated");
        Assert.That(await _host.Broker.QueueMessageCountAsync($"{Queue}_error"), Is.Zero, "exactly one message in the error queue");
    }

    [Test]
    public async Task When_the_same_message_is_delivered_twice_should_apply_it_once()
    {
        var sku = $"BELT-{Guid.NewGuid():N}";
        var messageId = Guid.NewGuid().ToString();

        await Publish(Update(sku, 6, "yard"), messageId);
        await Publish(Update(sku, 6, "yard"), messageId);
        Assert.That((await Level(sku, 6))?.GetProperty("quantity").GetInt32(), Is.EqualTo(6));
        await Publish(Update(sku, 6, "yard"), messageId);   // redelivered later, in a batch of its own
        await Publish(Update(sku, 1, "yard"));

        Assert.That((await Level(sku, 7))?.GetProperty("quantity").GetInt32(), Is.EqualTo(7), "the duplicate was applied again, or the next update not at all");
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_updated.Count(u => u.Sku == sku) == 2), TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(await _host.Broker.QueueMessageCountAsync($"{Queue}_error") ?? 0, Is.Zero, "a duplicate is acknowledged, not failed");
    }

    [Test]
    public async Task When_an_update_has_no_message_id_should_still_apply_it()
    {
        var sku = $"GEAR-{Guid.NewGuid():N}";

        await Publish(Update(sku, 3, "dock"), messageId: null);

        Assert.That((await Level(sku, 3))?.GetProperty("quantity").GetInt32(), Is.EqualTo(3));
    }
}
