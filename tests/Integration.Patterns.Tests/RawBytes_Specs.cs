using System.Text;
using System.Text.Json;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Filtering;
using Integration.Patterns.History;
using Integration.Patterns.RecipientList;
using Integration.Patterns.Routing;
using Integration.Patterns.Transformation;
using Integration.Patterns.WireTap;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

public sealed record PriceUpdate(string Sku, decimal Amount, string Region);

public sealed record PriceInCents(string Sku, long Cents);

/// <summary>
/// Raw JSON from a non-.NET client (plain RabbitMQ.Client on both ends): what a route passes on unchanged arrives byte for
/// byte, with its content type, content encoding and headers; only a translator's result is serialized anew.
/// </summary>
[TestFixture(Category = "Integration")]
public sealed class RawBytes_Specs
{
    // Odd white space, a decimal with a trailing zero, a property order no serializer would choose.
    const string Json = "{ \"region\":\"north\",\n\t\"amount\" :120.50 ,   \"sku\": \"PUMP-1\"\r\n}";
    static readonly byte[] Body = Encoding.UTF8.GetBytes(Json);

    static Task<RouteHarness<PriceUpdate>> Start(Action<IRouteBuilder> routes) => RouteHarness<PriceUpdate>.StartAsync(new RabbitMq(), routes, []);

    static async Task Publish(RouteHarness<PriceUpdate> harness, string queue, string region = "north")
    {
        var body = region == "north" ? Body : Encoding.UTF8.GetBytes(Json.Replace("north", region, StringComparison.Ordinal));
        await ((RabbitMq)harness.Transport).PublishRawAsync(queue, new RabbitMQ.Client.BasicProperties
        {
            ContentType = "application/json",
            ContentEncoding = "utf-8",
            MessageId = Guid.NewGuid().ToString(),
            DeliveryMode = RabbitMQ.Client.DeliveryModes.Persistent,
            Headers = new Dictionary<string, object?> { ["x-device"] = "truck-7", ["x-attempt"] = 3 },
        }, body);
    }

    static async Task<RawDelivery> Take(RouteHarness<PriceUpdate> harness, string queue)
    {
        var delivery = await ((RabbitMq)harness.Transport).TakeRawAsync(queue);
        Assert.That(delivery, Is.Not.Null, $"nothing arrived at {queue}");
        return delivery!;
    }

    static void AssertForwardedAsIs(RawDelivery delivery, byte[] body)
    {
        Assert.That(Encoding.UTF8.GetString(delivery.Body), Is.EqualTo(Encoding.UTF8.GetString(body)), "the body must be the producer's, byte for byte");
        Assert.That(delivery.Body, Is.EqualTo(body));
        Assert.That(delivery.ContentType, Is.EqualTo("application/json"));
        Assert.That(delivery.ContentEncoding, Is.EqualTo("utf-8"));
        Assert.That(delivery.Headers, Does.ContainKey("x-device").WithValue("truck-7"));
        Assert.That(delivery.Headers, Does.ContainKey("x-attempt").WithValue("3"));
        Assert.That(delivery.Headers, Does.ContainKey(MessageHistory.Header), "the route still adds its own headers");
    }

    [Test]
    public async Task When_a_raw_message_is_tapped_filtered_and_routed_should_deliver_the_producers_bytes_content_type_encoding_and_headers_to_every_queue()
    {
        await using var harness = await Start(routes => routes.From<PriceUpdate>("prices", r => r
                .WireTap("prices-audit")
                .Filter(p => p.Region != "test", otherwise: "prices-discarded")
                .Route(c => c.When(p => p.Amount > 100, "prices-high").Otherwise("prices-low")),
            e => e.RawJson = true));

        await Publish(harness, "prices");
        await Publish(harness, "prices", region: "test");

        AssertForwardedAsIs(await Take(harness, "prices-high"), Body);
        var audit = new[] { await Take(harness, "prices-audit"), await Take(harness, "prices-audit") };
        Assert.That(audit.Select(a => Encoding.UTF8.GetString(a.Body)), Is.EquivalentTo(new[] { Json, Json.Replace("north", "test", StringComparison.Ordinal) }));
        AssertForwardedAsIs(audit.Single(a => a.Body.SequenceEqual(Body)), Body);
        AssertForwardedAsIs(await Take(harness, "prices-discarded"), Encoding.UTF8.GetBytes(Json.Replace("north", "test", StringComparison.Ordinal)));
    }

    [Test]
    public async Task When_a_raw_message_goes_to_a_recipient_list_should_deliver_the_producers_bytes_to_each_recipient()
    {
        await using var harness = await Start(routes => routes.From<PriceUpdate>("prices", r => r.RecipientList("prices-erp", "prices-shop"), e => e.RawJson = true));

        await Publish(harness, "prices");

        AssertForwardedAsIs(await Take(harness, "prices-erp"), Body);
        AssertForwardedAsIs(await Take(harness, "prices-shop"), Body);
    }

    [Test]
    public async Task When_a_raw_xml_message_is_routed_should_deliver_the_producers_xml()
    {
        const string Xml = "<?xml version=\"1.0\"?>\n<priceUpdate  sku='PUMP-1'><amount>120.50</amount><region>north</region></priceUpdate>";
        await using var harness = await Start(routes => routes.From<PriceUpdate>("prices-xml", r => r
                .Route(c => c.When(p => p.Amount == 120.5m && p.Region == "north" && p.Sku == "PUMP-1", "prices-bound").Otherwise("prices-other")),
            e => e.RawXml = true));

        await ((RabbitMq)harness.Transport).PublishRawAsync("prices-xml", new RabbitMQ.Client.BasicProperties
        {
            ContentType = "application/xml",
            Headers = new Dictionary<string, object?> { ["x-device"] = "truck-7" },
        }, Encoding.UTF8.GetBytes(Xml));

        var delivery = await Take(harness, "prices-bound");
        Assert.That(Encoding.UTF8.GetString(delivery.Body), Is.EqualTo(Xml));
        Assert.That(delivery.ContentType, Is.EqualTo("application/xml"));
        Assert.That(delivery.Headers, Does.ContainKey("x-device").WithValue("truck-7"));
    }

    [Test]
    public async Task When_a_translator_changed_the_message_should_send_the_new_message_as_plain_json_and_taps_after_it_the_new_one_too()
    {
        await using var harness = await Start(routes => routes.From<PriceUpdate>("prices", r => r
                .Translate(p => new PriceInCents(p.Sku, (long)(p.Amount * 100)))
                .WireTap("cents-audit")
                .To("prices-cents"),
            e => e.RawJson = true));

        await Publish(harness, "prices");

        foreach (var queue in new[] { "prices-cents", "cents-audit" })
        {
            var delivery = await Take(harness, queue);
            var json = JsonDocument.Parse(delivery.Body).RootElement;
            Assert.That(json.GetProperty("cents").GetInt64(), Is.EqualTo(12050), $"{queue}: the translated message");
            Assert.That(json.TryGetProperty("region", out _), Is.False, $"{queue}: not the received one");
            Assert.That(delivery.ContentType, Is.EqualTo("application/json"), $"{queue}: still plain JSON");
        }
    }
}

/// <summary>
/// A raw JSON route also takes enveloped messages from .NET producers; it sends them on in its own format (plain JSON,
/// the wire tap's copy too), with their history.
/// </summary>
[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class RawRoute_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_a_dotnet_producer_sends_an_enveloped_message_to_a_raw_json_route_should_send_it_and_its_tap_copy_on_as_plain_json_with_the_history()
    {
        await using var harness = await RouteHarness<PriceUpdate>.StartAsync(new TTransport(),
            routes => routes.From<PriceUpdate>("prices", r => r.WireTap("prices-audit").To("prices-out"), e => e.RawJson = true),
            ["prices-audit", "prices-out"], capture: e => e.UseRawJsonDeserializer(RawSerializerOptions.AnyMessageType, isDefault: true));

        await harness.Send("prices", new PriceUpdate("PUMP-1", 120.50m, "north"));

        var routed = (await harness.WaitFor("prices-out")).Single();
        var copy = (await harness.WaitFor("prices-audit")).Single();
        Assert.That(routed.Message, Is.EqualTo(new PriceUpdate("PUMP-1", 120.50m, "north")));
        Assert.That(copy.Message, Is.EqualTo(routed.Message));
        Assert.That(new[] { routed.ContentType, copy.ContentType }, Is.EqualTo(new[] { "application/json", "application/json" }), "the route's format, not an envelope");
        Assert.That(MessageHistory.Read(routed.Headers).Select(e => e.Step), Is.EqualTo(new[] { "wiretap:prices-audit", "to:prices-out" }));
        Assert.That(MessageHistory.Read(copy.Headers).Select(e => e.Step), Is.EqualTo(new[] { "wiretap:prices-audit" }));
    }
}
