using Integration.Patterns.Endpoints;
using Integration.Patterns.Normalization;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Normalizer_Specs<TTransport>
    where TTransport : ITransport, new()
{
    internal static void Parts(IRouteBuilder routes) => routes.From<RawDocument>("parts-in", r => r
            .Normalize<CanonicalPart>(n => n
                .Json<PartJson>(j => new CanonicalPart(j.RequestId, j.Sku, j.Quantity, "json"))
                .Xml<PartXml>(x => new CanonicalPart(x.Id, x.Line.Sku, x.Line.Qty, "xml"))
                .Csv<PartCsv>(c => new CanonicalPart(c.Request, c.Sku, c.Qty, "csv")))
            .To("parts-canonical"),
        e => e.RawDocuments = true);

    [Test]
    public async Task When_json_xml_and_csv_arrive_should_send_the_same_canonical_message_for_each()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new TTransport(), Parts, ["parts-canonical"]);

        await harness.Send("parts-in", new RawDocument("application/json", """{"requestId":"r1","sku":"PUMP-1","quantity":2}"""));
        await harness.Send("parts-in", new RawDocument("application/xml", """<part id="r2"><line><sku>PUMP-1</sku><qty>2</qty></line></part>"""));
        await harness.Send("parts-in", new RawDocument("text/csv", "request,sku,qty\r\nr3,PUMP-1,2\r\n"));

        var parts = (await harness.WaitFor("parts-canonical", 3)).Select(c => c.Message).OrderBy(p => p.RequestId).ToList();
        Assert.That(parts, Is.EqualTo(new[]
        {
            new CanonicalPart("r1", "PUMP-1", 2, "json"),
            new CanonicalPart("r2", "PUMP-1", 2, "xml"),
            new CanonicalPart("r3", "PUMP-1", 2, "csv"),
        }));
    }

    [Test]
    public async Task When_a_csv_body_has_several_records_should_send_them_as_a_sequence()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new TTransport(), Parts, ["parts-canonical"]);

        await harness.Send("parts-in", new RawDocument(null, "request,sku,qty\nr4,A,1\nr4,\"B, large\",2\n"));

        var parts = (await harness.WaitFor("parts-canonical", 2)).OrderBy(p => MessageSequence.Read(p.Headers)!.Index).ToList();
        Assert.That(parts.Select(p => p.Message.Sku).ToArray(), Is.EqualTo(new[] { "A", "B, large" }));
        Assert.That(parts.Select(p => MessageSequence.Read(p.Headers)!.Size).ToArray(), Is.EqualTo(new[] { 2, 2 }));
    }

    [Test]
    public async Task When_the_xml_is_malformed_should_fault_the_message_with_the_reason()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new TTransport(), Parts, ["parts-canonical"]);

        await harness.Send("parts-in", new RawDocument("application/xml", "<part id=\"r5\"><line>"));

        Assert.That(await harness.Harness.Consumed.Any<RawDocument>(x =>
            x.Exception is NormalizationException e && e.Message.StartsWith("Route 'parts-in': The body is not well-formed XML")), Is.True);
        Assert.That(await harness.QueueHolds("parts-in_error", 1), Is.True);
    }

    [Test]
    public async Task When_a_csv_record_does_not_fit_should_fault_the_message_with_the_reason()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new TTransport(), Parts, ["parts-canonical"]);

        await harness.Send("parts-in", new RawDocument("text/csv", "request,sku,qty\nr6,A,lots\n"));

        Assert.That(await harness.Harness.Consumed.Any<RawDocument>(x =>
            x.Exception is NormalizationException e && e.Message.Contains("The Csv body does not fit PartCsv")), Is.True);
        Assert.That(harness.At("parts-canonical"), Is.Empty);
    }

    [Test]
    public void When_no_format_is_mapped_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new TTransport(),
                routes => routes.From<RawDocument>("parts-in", r => r.Normalize<CanonicalPart>(_ => { }).To("x"), e => e.RawDocuments = true), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'parts-in', step 1 (Normalize): no format is mapped"));
    }
}

/// <summary>Raw bodies from a non-.NET producer, straight onto the queue: only the real broker has them.</summary>
[TestFixture(Category = "Integration")]
public sealed class RawFormats_Specs
{
    [Test]
    public async Task When_raw_json_xml_and_csv_bodies_arrive_should_normalize_each()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new RabbitMq(), Normalizer_Specs<RabbitMq>.Parts, ["parts-canonical"]);
        var broker = (RabbitMq)harness.Transport;

        await broker.PublishRawAsync("parts-in", "application/json", """{"requestId":"r1","sku":"S","quantity":1}""");
        await broker.PublishRawAsync("parts-in", "text/xml", """<?xml version="1.0"?><part id="r2"><line><sku>S</sku><qty>1</qty></line></part>""");
        await broker.PublishRawAsync("parts-in", "text/csv", "request,sku,qty\nr3,S,1");
        await broker.PublishRawAsync("parts-in", null, "<part id=\"r4\"><line><sku>S</sku><qty>1</qty></line></part>");

        var parts = (await harness.WaitFor("parts-canonical", 4)).Select(c => c.Message).OrderBy(p => p.RequestId).ToList();
        Assert.That(parts.Select(p => p.Source).ToArray(), Is.EqualTo(new[] { "json", "xml", "csv", "xml" }));
    }

    [Test]
    public async Task When_raw_xml_is_enabled_should_read_plain_xml_bodies_into_the_message_type()
    {
        // The route passes the XML on as it came, so the consumer of orders-out reads XML too.
        await using var harness = await RouteHarness<Order>.StartAsync(new RabbitMq(),
            routes => routes.From<Order>("orders-xml", r => r.To("orders-out"), e => e.RawXml = true), ["orders-out"],
            capture: e => e.AddDeserializer(new Normalization.RawBodyDeserializer(new System.Net.Mime.ContentType("application/xml"), asDocument: false)));
        var broker = (RabbitMq)harness.Transport;

        await broker.PublishRawAsync("orders-xml", "application/xml", "<order><id>7</id><kind>priority</kind><amount>3</amount><customer>acme</customer></order>");

        Assert.That((await harness.WaitFor("orders-out")).Single().Message, Is.EqualTo(new Order("7", "priority", 3, "acme")));
    }

    [Test]
    public async Task When_raw_xml_is_malformed_should_land_in_the_error_queue_with_the_reason()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new RabbitMq(),
            routes => routes.From<Order>("orders-xml", r => r.To("orders-out"), e => e.RawXml = true), ["orders-out"]);
        var broker = (RabbitMq)harness.Transport;

        await broker.PublishRawAsync("orders-xml", "application/xml", "<order><id>7</id>");

        Assert.That(await harness.QueueHolds("orders-xml_error", 1), Is.True);
        var faulted = await broker.Raw.TakeAsync("orders-xml_error");
        Assert.That(faulted.FaultMessage, Does.Contain("not well-formed XML"));
    }

    [Test]
    public async Task When_raw_csv_is_malformed_should_land_in_the_error_queue_with_the_reason()
    {
        await using var harness = await RouteHarness<CanonicalPart>.StartAsync(new RabbitMq(), Normalizer_Specs<RabbitMq>.Parts, ["parts-canonical"]);
        var broker = (RabbitMq)harness.Transport;

        await broker.PublishRawAsync("parts-in", "text/csv", "request,sku,qty\nr9,\"unterminated,1\n");

        Assert.That(await harness.QueueHolds("parts-in_error", 1), Is.True);
        var faulted = await broker.Raw.TakeAsync("parts-in_error");
        Assert.That(faulted.FaultMessage, Does.Contain("unterminated"));
    }
}
