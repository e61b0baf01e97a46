using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Integration.Host.Tests.Operations;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Parts;

/// <summary>
/// Compressed parts requests on the real host and broker: a device that gzips its JSON (AMQP <c>content_encoding: gzip</c>)
/// is routed exactly like one that does not; a corrupt or over-limit body goes to <c>parts-requests_error</c> with the reason.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class PartsCompression_Specs
{
    ControlHost _host = null!;
    IConnection _connection = null!;

    [SetUp]
    public async Task StartHost()
    {
        _host = await ControlHost.StartAsync("parts-gzip");
        _connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
    }

    [TearDown]
    public async Task StopHost()
    {
        await _connection.DisposeAsync();
        await _host.DisposeAsync();
    }

    async Task Publish(byte[] body, string? contentEncoding)
    {
        await using var channel = await _connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties { ContentType = "application/json", ContentEncoding = contentEncoding, Persistent = true, MessageId = Guid.NewGuid().ToString() };
        await channel.BasicPublishAsync("", "parts-requests", mandatory: true, properties, body);
    }

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
        }, TimeSpan.FromSeconds(15));
        return result;
    }

    static string Header(BasicGetResult message, string name) =>
        message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), _ => value?.ToString() ?? "" }
            : "";

    static List<string?> History(BasicGetResult message) =>
        JsonDocument.Parse(Header(message, "Integration-History")).RootElement.EnumerateArray().Select(e => e.GetProperty("step").GetString()).ToList();

    static byte[] Request(string requestId, string category) =>
        Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { requestId, deviceId = "truck-9", category, sku = "SKU-1", quantity = 2 }));

    static byte[] Gzip(byte[] plain)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Optimal, leaveOpen: true))
            gzip.Write(plain);
        return output.ToArray();
    }

    [Test]
    public async Task When_a_gzip_compressed_request_arrives_should_route_it_exactly_like_the_plain_one()
    {
        var plain = Request(Guid.NewGuid().ToString(), "electronics");
        var compressed = Request(Guid.NewGuid().ToString(), "electronics");

        await Publish(plain, null);
        var plainRouted = await Take("parts-electronics");
        var plainAudit = await Take("audit");
        await Publish(Gzip(compressed), "gzip");
        var routed = await Take("parts-electronics");
        var audit = await Take("audit");

        Assert.That(plainRouted, Is.Not.Null, "the plain request was not routed");
        Assert.That(plainAudit, Is.Not.Null);
        Assert.That(routed, Is.Not.Null, "the gzip request was not routed to parts-electronics");
        Assert.That(audit, Is.Not.Null, "the gzip request was not tapped to audit");
        Assert.Multiple(() =>
        {
            Assert.That(routed!.Body.ToArray(), Is.EqualTo(compressed), "routed as the plain one is: the device's JSON, decompressed");
            Assert.That(routed.BasicProperties.ContentType, Is.EqualTo(plainRouted!.BasicProperties.ContentType));
            Assert.That(routed.BasicProperties.ContentEncoding, Is.EqualTo(plainRouted.BasicProperties.ContentEncoding));
            Assert.That(History(routed), Is.EqualTo(History(plainRouted)));
            Assert.That(audit!.Body.ToArray(), Is.EqualTo(compressed));
        });
    }

    [Test]
    public async Task When_a_compressed_request_is_corrupt_should_dead_letter_it_with_the_reason_and_keep_routing()
    {
        await Publish(Encoding.UTF8.GetBytes("not gzip"), "gzip");
        var next = Guid.NewGuid().ToString();
        await Publish(Gzip(Request(next, "hydraulics")), "gzip");

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null, "the corrupt request was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("not valid gzip"));
        var routed = await Take("parts-hydraulics");
        Assert.That(routed, Is.Not.Null, "the route stopped after a corrupt request");
        Assert.That(JsonDocument.Parse(routed!.Body).RootElement.GetProperty("requestId").GetString(), Is.EqualTo(next));
    }

    [Test]
    public async Task When_a_compressed_request_inflates_past_the_limit_should_dead_letter_it_saying_so()
    {
        var bomb = Encoding.UTF8.GetBytes("{\"requestId\":\"bomb\",\"deviceId\":\"truck-9\",\"category\":\"electronics\",\"sku\":\"" + new string('x', 4 * 1024 * 1024) + "\",\"quantity\":1}");

        await Publish(Gzip(bomb), "gzip");

        var failed = await Take("parts-requests_error");
        Assert.That(failed, Is.Not.Null, "the zip bomb was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("inflates past the limit of 1048576 bytes"));
        Assert.That(await _host.Broker.QueueMessageCountAsync("parts-electronics"), Is.Zero);
    }
}
