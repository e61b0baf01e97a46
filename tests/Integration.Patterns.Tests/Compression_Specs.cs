using System.Collections.Concurrent;
using System.Net.Mime;
using System.Text;
using System.Text.Json;
using Integration.Patterns.Compression;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Routing;
using Integration.Patterns.Security;
using Integration.Patterns.Transformation;
using Integration.Testing;
using MassTransit;
using MassTransit.Serialization;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

public sealed record Manifest(string Id, string Region, string Lines);

public sealed record ManifestSummary(string Id, int Length);

/// <summary>A body as it reached a queue, read below MassTransit's deserializers: bytes, content type, content encoding, headers.</summary>
public sealed record Arrived(byte[] Body, string? ContentType, string? ContentEncoding, IReadOnlyDictionary<string, string> Headers)
{
    public string Header(string name) => Headers.TryGetValue(name, out var value) ? value : "";
}

/// <summary>
/// Receive endpoints that record what arrives at them as bytes (before any deserializer), on either transport: the
/// destination of a route, or a route's <c>_error</c> queue.
/// </summary>
public sealed class ArrivalLog
{
    readonly ConcurrentDictionary<string, ConcurrentQueue<Arrived>> _arrived = new(StringComparer.Ordinal);

    public void Listen(IBusFactoryConfigurator cfg, params string[] queues)
    {
        foreach (var queue in queues)
        {
            var log = _arrived.GetOrAdd(queue, _ => new ConcurrentQueue<Arrived>());
            cfg.ReceiveEndpoint(queue, e => e.ConfigureReceive(r => r.UseFilter(new RecordFilter(log))));
        }
    }

    public IReadOnlyList<Arrived> At(string queue) => _arrived.TryGetValue(queue, out var q) ? q.ToList() : [];

    public async Task<Arrived> Next(string queue, int count = 1, double seconds = 15)
    {
        var arrived = await Eventually.TrueAsync(() => Task.FromResult(At(queue).Count >= count), TimeSpan.FromSeconds(seconds));
        Assert.That(arrived, Is.True, $"nothing (or fewer than {count}) arrived at {queue}");
        return At(queue)[count - 1];
    }

    sealed class RecordFilter(ConcurrentQueue<Arrived> log) : IFilter<ReceiveContext>
    {
        public Task Send(ReceiveContext context, IPipe<ReceiveContext> next)
        {
            var headers = context.TransportHeaders.GetAll()
                .Where(h => h.Value is not null)
                .GroupBy(h => h.Key, StringComparer.OrdinalIgnoreCase)
                .ToDictionary(g => g.Key, g => g.First().Value switch { byte[] b => Encoding.UTF8.GetString(b), var v => v.ToString() ?? "" },
                    StringComparer.OrdinalIgnoreCase);
            log.Enqueue(new Arrived(context.Body.GetBytes(), context.ContentType?.MediaType, ContentEncodings.Read(context), headers));
            return Task.CompletedTask;   // recorded, not consumed further
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("record");
    }
}

/// <summary>
/// Compression on both transports: compressed raw and typed bodies (gzip, br, lz4, snappy) are read like plain ones,
/// outgoing bodies over the threshold are compressed, compression composes with AES-GCM, and a corrupt or over-limit
/// body goes to the error queue with the reason while the endpoint goes on.
/// </summary>
[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Compression_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static readonly CompressionEncoding[] Encodings = [CompressionEncoding.Gzip, CompressionEncoding.Brotli, CompressionEncoding.Lz4, CompressionEncoding.Snappy];

    static readonly byte[] Key = Enumerable.Range(7, 32).Select(i => (byte)i).ToArray();

    static string Json(string id, string region = "north", int lines = 10) =>
        JsonSerializer.Serialize(new { id, region, lines = string.Concat(Enumerable.Repeat("PUMP-1 x2; VALVE-9 x1; ", lines)) });

    /// <summary>Publishes a body with a content type and encoding as a producer outside .NET would (the in-memory transport: the encoding in the header).</summary>
    static async Task SendRaw(ITransport transport, IBus bus, string queue, byte[] body, string? contentEncoding, string contentType = "application/json")
    {
        if (transport is RabbitMq rabbit)
        {
            await rabbit.PublishRawAsync(queue, new RabbitMQ.Client.BasicProperties
            {
                ContentType = contentType,
                ContentEncoding = contentEncoding,
                MessageId = Guid.NewGuid().ToString(),
                DeliveryMode = RabbitMQ.Client.DeliveryModes.Persistent,
            }, body);
            return;
        }

        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
        await endpoint.Send(new RawBody(), Pipe.Execute<SendContext<RawBody>>(send =>
        {
            send.Serializer = new FixedBodySerializer(body, new ContentType(contentType));
            send.ContentType = new ContentType(contentType);
            if (contentEncoding is not null)
                send.Headers.Set(MessageCompression.ContentEncodingHeader, contentEncoding);
        }));
    }

    sealed record RawBody;

    sealed class FixedBodySerializer(byte[] body, ContentType contentType) : RawMessageSerializer, IMessageSerializer
    {
        public ContentType ContentType { get; } = contentType;

        public MessageBody GetMessageBody<T>(SendContext<T> context)
            where T : class => new BytesMessageBody(body);
    }

    sealed class Running(ServiceProvider provider, ITransport transport) : IAsyncDisposable
    {
        public IBus Instance => provider.GetRequiredService<IBus>();

        public ITransport Transport => transport;

        public async ValueTask DisposeAsync()
        {
            try
            {
                await provider.GetRequiredService<ITestHarness>().Stop();
                await provider.DisposeAsync();
            }
            finally
            {
                await transport.DisposeAsync();
            }
        }
    }

    static async Task<Running> Start(Action<IRouteBuilder>? routes, Action<IBusRegistrationContext, IBusFactoryConfigurator> configure, Action<IBusRegistrationConfigurator>? register = null)
    {
        var transport = new TTransport();
        await transport.StartAsync();
        var provider = new ServiceCollection()
            .AddMassTransitTestHarness(x =>
            {
                register?.Invoke(x);
                if (routes is not null)
                    x.AddIntegrationRoutes(routes);
                transport.Use(x, (context, cfg) =>
                {
                    configure(context, cfg);
                    if (routes is not null)
                        cfg.ConfigureIntegrationRoutes(context);
                });
            })
            .BuildServiceProvider(true);
        var bus = new Running(provider, transport);
        try
        {
            await provider.GetRequiredService<ITestHarness>().Start();
        }
        catch
        {
            await bus.DisposeAsync();
            throw;
        }

        return bus;
    }

    static Action<IRouteBuilder> RawRoute(string queue, CompressionOptions compression, Action<IRouteConfigurator<Manifest>> steps) =>
        routes => routes.From(queue, steps, e =>
        {
            e.RawJson = true;
            e.Compression = compression;
        });

    [Test]
    public async Task When_a_raw_json_body_is_compressed_should_route_it_like_the_plain_one([ValueSource(nameof(Encodings))] CompressionEncoding encoding)
    {
        var log = new ArrivalLog();
        await using var bus = await Start(RawRoute("manifests", new CompressionOptions(), r => r.Route(c => c
            .When(m => m.Region == "north", "manifests-north").Otherwise("manifests-other"))), (_, cfg) => log.Listen(cfg, "manifests-north", "manifests-other"));
        var plain = Encoding.UTF8.GetBytes(Json("m-1"));
        var compressed = MessageCompression.Compress(plain, encoding);

        await SendRaw(bus.Transport, bus.Instance, "manifests", compressed, MessageCompression.Name(encoding));

        var arrived = await log.Next("manifests-north");
        Assert.Multiple(() =>
        {
            Assert.That(arrived.Body, Is.EqualTo(plain), "passed on as the plain one would be: the producer's JSON, byte for byte");
            Assert.That(arrived.ContentEncoding, Is.Null);
            Assert.That(arrived.ContentType, Is.EqualTo("application/json"));
            Assert.That(log.At("manifests-other"), Is.Empty);
        });
    }

    [Test]
    public async Task When_the_route_compresses_should_pass_an_unchanged_message_on_in_its_own_encoding()
    {
        var log = new ArrivalLog();
        await using var bus = await Start(RawRoute("manifests", new CompressionOptions { Compress = CompressionEncoding.Lz4, ThresholdBytes = 0 }, r => r.To("manifests-out")),
            (_, cfg) => log.Listen(cfg, "manifests-out"));
        var plain = Encoding.UTF8.GetBytes(Json("m-2"));

        await SendRaw(bus.Transport, bus.Instance, "manifests", MessageCompression.Compress(plain, CompressionEncoding.Gzip), "gzip");
        await SendRaw(bus.Transport, bus.Instance, "manifests", plain, null);

        var first = await log.Next("manifests-out");
        var second = await log.Next("manifests-out", 2);
        foreach (var arrived in new[] { first, second })
        {
            Assert.That(arrived.ContentEncoding, Is.EqualTo("lz4"));
            Assert.That(MessageCompression.Decompress(arrived.Body, CompressionEncoding.Lz4, 1 << 20), Is.EqualTo(plain));
        }
    }

    [Test]
    public async Task When_a_raw_xml_body_is_compressed_should_read_it_like_the_plain_one()
    {
        var log = new ArrivalLog();
        await using var bus = await Start(routes => routes.From<Manifest>("manifests-xml", r => r
                .Translate(m => new ManifestSummary(m.Id, m.Lines.Length))
                .To("summaries"),
            e =>
            {
                e.RawXml = true;
                e.RawJson = true;
                e.Compression = new CompressionOptions();
            }), (_, cfg) => log.Listen(cfg, "summaries"));
        var xml = Encoding.UTF8.GetBytes("<manifest><id>x-1</id><region>north</region><lines>abc</lines></manifest>");

        await SendRaw(bus.Transport, bus.Instance, "manifests-xml", MessageCompression.Compress(xml, CompressionEncoding.Brotli), "br", "application/xml");

        var arrived = await log.Next("summaries");
        var summary = JsonSerializer.Deserialize<ManifestSummary>(arrived.Body, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        Assert.That(summary, Is.EqualTo(new ManifestSummary("x-1", 3)));
    }

    [Test]
    public async Task When_a_message_a_step_made_is_over_the_threshold_should_compress_it_and_set_the_encoding([ValueSource(nameof(Encodings))] CompressionEncoding encoding)
    {
        var log = new ArrivalLog();
        await using var bus = await Start(RawRoute("manifests", new CompressionOptions { Compress = encoding, ThresholdBytes = 200 }, r => r
                .Translate(m => m.Id == "small" ? new Manifest(m.Id, m.Region, "") : m with { Region = "south" })
                .To("manifests-out")),
            (_, cfg) => log.Listen(cfg, "manifests-out"));

        await SendRaw(bus.Transport, bus.Instance, "manifests", Encoding.UTF8.GetBytes(Json("big", lines: 40)), null);
        var big = await log.Next("manifests-out");
        await SendRaw(bus.Transport, bus.Instance, "manifests", Encoding.UTF8.GetBytes(Json("small")), null);
        var small = await log.Next("manifests-out", 2);

        Assert.Multiple(() =>
        {
            Assert.That(big.ContentEncoding, Is.EqualTo(MessageCompression.Name(encoding)));
            var json = Encoding.UTF8.GetString(MessageCompression.Decompress(big.Body, encoding, 1 << 20));
            Assert.That(json, Does.Contain("\"south\""));
            Assert.That(big.Body.Length, Is.LessThan(json.Length), "compressed");
            Assert.That(small.ContentEncoding, Is.Null, "under the threshold: sent as it is");
            Assert.That(Encoding.UTF8.GetString(small.Body), Does.Contain("\"small\""));
        });
    }

    sealed class Received
    {
        public ConcurrentQueue<Manifest> Manifests { get; } = new();
    }

    sealed class ManifestConsumer(Received received) : IConsumer<Manifest>
    {
        public Task Consume(ConsumeContext<Manifest> context)
        {
            received.Manifests.Enqueue(context.Message);
            return Task.CompletedTask;
        }
    }

    static Task<Running> StartTyped(Received received, Action<IBusFactoryConfigurator> bus, Action<IReceiveEndpointConfigurator>? endpoint = null, ArrivalLog? log = null,
        string[]? listen = null) =>
        Start(null, (context, cfg) =>
        {
            bus(cfg);
            cfg.ReceiveEndpoint("manifest-consumer", e =>
            {
                endpoint?.Invoke(e);
                e.ConfigureConsumer<ManifestConsumer>(context);
            });
            if (log is not null && listen is not null)
                log.Listen(cfg, listen);
        }, x =>
        {
            x.AddSingleton(received);
            x.AddConsumer<ManifestConsumer>();
        });

    [Test]
    public async Task When_a_typed_message_is_compressed_should_round_trip_to_the_consumer([ValueSource(nameof(Encodings))] CompressionEncoding encoding)
    {
        var received = new Received();
        var log = new ArrivalLog();
        var compression = new CompressionOptions { Compress = encoding, ThresholdBytes = 100 };
        await using var bus = await StartTyped(received, cfg => cfg.UseMessageCompression(compression), log: log, listen: ["manifest-wire"]);
        var manifest = new Manifest("t-1", "north", string.Concat(Enumerable.Repeat("FILTER-3 x4; ", 300)));

        await (await bus.Instance.GetSendEndpoint(new Uri("queue:manifest-consumer"))).Send(manifest);
        await (await bus.Instance.GetSendEndpoint(new Uri("queue:manifest-wire"))).Send(manifest);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(received.Manifests.Contains(manifest)), TimeSpan.FromSeconds(15)), Is.True,
            "the consumer never got the compressed message");
        var wire = await log.Next("manifest-wire");
        Assert.That(wire.ContentEncoding, Is.EqualTo(MessageCompression.Name(encoding)));
        Assert.That(wire.Body.Length, Is.LessThan(manifest.Lines.Length), "the body on the wire is compressed");
    }

    [Test]
    public async Task When_compression_and_encryption_are_combined_should_compress_then_encrypt_and_round_trip()
    {
        var received = new Received();
        var log = new ArrivalLog();
        var keys = EncryptionKeyRing.Create("k1", new Dictionary<string, byte[]> { ["k1"] = Key });
        var compression = new CompressionOptions { Compress = CompressionEncoding.Gzip, ThresholdBytes = 100 };
        await using var bus = await StartTyped(received, cfg => cfg.UseAesGcmEncryption(keys, compression),
            e => e.UseAesGcmEncryption(keys, compression, requireEncrypted: true), log, ["manifest-wire"]);
        var manifest = new Manifest("e-1", "north", string.Concat(Enumerable.Repeat("SEAL-12 x8; ", 80)));

        await (await bus.Instance.GetSendEndpoint(new Uri("queue:manifest-consumer"))).Send(manifest);
        await (await bus.Instance.GetSendEndpoint(new Uri("queue:manifest-wire"))).Send(manifest);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(received.Manifests.Contains(manifest)), TimeSpan.FromSeconds(15)), Is.True,
            "the consumer never got the compressed, encrypted message");
        var wire = await log.Next("manifest-wire");
        Assert.Multiple(() =>
        {
            Assert.That(wire.ContentType, Is.EqualTo(MessageEncryption.ContentType));
            Assert.That(wire.ContentEncoding, Is.EqualTo("gzip"));
            Assert.That(Encoding.UTF8.GetString(wire.Body), Does.Not.Contain("SEAL-12"), "encrypted");
            Assert.That(wire.Body.Length, Is.LessThan(manifest.Lines.Length), "compressed before it was encrypted (ciphertext does not compress)");
            Assert.Throws<System.Runtime.Serialization.SerializationException>(() => MessageCompression.Decompress(wire.Body, CompressionEncoding.Gzip, 1 << 20),
                "the outer layer is the encryption, not the gzip");
        });
    }

    [Test]
    public async Task When_the_body_is_corrupt_should_move_it_to_the_error_queue_with_the_reason_and_go_on()
    {
        var log = new ArrivalLog();
        await using var bus = await Start(RawRoute("manifests", new CompressionOptions(), r => r.To("manifests-out")),
            (_, cfg) => log.Listen(cfg, "manifests-out", "manifests_error"));

        await SendRaw(bus.Transport, bus.Instance, "manifests", Encoding.UTF8.GetBytes("this is not gzip at all"), "gzip");
        await SendRaw(bus.Transport, bus.Instance, "manifests", MessageCompression.Compress(Encoding.UTF8.GetBytes(Json("after")), CompressionEncoding.Gzip), "gzip");

        var error = await log.Next("manifests_error");
        Assert.That(error.Header("MT-Fault-Message"), Does.Contain("not valid gzip"));
        Assert.That(Encoding.UTF8.GetString(error.Body), Is.EqualTo("this is not gzip at all"), "the error queue keeps the body as it came");
        var after = await log.Next("manifests-out");
        Assert.That(Encoding.UTF8.GetString(after.Body), Does.Contain("\"after\""),
            "the next message is routed: nothing else stops");
    }

    [Test]
    public async Task When_the_body_inflates_past_the_limit_should_move_it_to_the_error_queue_with_the_reason([ValueSource(nameof(Encodings))] CompressionEncoding encoding)
    {
        var log = new ArrivalLog();
        await using var bus = await Start(RawRoute("manifests", new CompressionOptions { MaxDecompressedBytes = 64 * 1024 }, r => r.To("manifests-out")),
            (_, cfg) => log.Listen(cfg, "manifests-out", "manifests_error"));
        // A small bomb: 4 MiB of spaces around a valid document compress to a few kilobytes.
        var bomb = Encoding.UTF8.GetBytes("{\"id\":\"bomb\",\"region\":\"north\",\"lines\":\"" + new string(' ', 4 * 1024 * 1024) + "\"}");
        var compressed = MessageCompression.Compress(bomb, encoding);

        await SendRaw(bus.Transport, bus.Instance, "manifests", compressed, MessageCompression.Name(encoding));
        await SendRaw(bus.Transport, bus.Instance, "manifests", Encoding.UTF8.GetBytes(Json("after")), null);

        var error = await log.Next("manifests_error");
        Assert.That(error.Header("MT-Fault-Message"), Does.Contain("inflates past the limit of 65536 bytes"));
        Assert.That(error.Body, Is.EqualTo(compressed));
        Assert.That(Encoding.UTF8.GetString((await log.Next("manifests-out")).Body), Does.Contain("\"after\""));
    }

    [Test]
    public async Task When_a_typed_endpoint_gets_a_corrupt_body_should_move_it_to_its_error_queue_with_the_reason()
    {
        var received = new Received();
        var log = new ArrivalLog();
        await using var bus = await StartTyped(received, _ => { }, e => e.UseMessageCompression(new CompressionOptions()), log, ["manifest-consumer_error"]);

        await SendRaw(bus.Transport, bus.Instance, "manifest-consumer", [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3], "lz4", "application/vnd.masstransit+json");

        var error = await log.Next("manifest-consumer_error");
        Assert.That(error.Header("MT-Fault-Message"), Does.Contain("not valid lz4"));
        Assert.That(received.Manifests, Is.Empty);
    }

    [Test]
    public void When_options_are_out_of_range_should_fail_at_configuration_naming_the_setting()
    {
        var failures = new CompressionOptions { ThresholdBytes = -1, MaxDecompressedBytes = 0 }.Validate("Integration:Compression").ToList();
        Assert.That(failures, Has.Some.Contains("Integration:Compression:ThresholdBytes"));
        Assert.That(failures, Has.Some.Contains("Integration:Compression:MaxDecompressedBytes"));
    }

    [Test]
    public void When_a_route_has_bad_compression_options_should_not_start()
    {
        var exception = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var bus = await Start(RawRoute("manifests", new CompressionOptions { MaxDecompressedBytes = 0 }, r => r.To("manifests-out")), (_, _) => { });
        });
        Assert.That(exception!.Message, Does.Contain("Route 'manifests', endpoint: Compression:MaxDecompressedBytes must be at least 1"));
    }
}
