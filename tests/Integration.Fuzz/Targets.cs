using System.Runtime.Serialization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Integration.Patterns.Compression;
using Integration.Patterns.Normalization;
using Integration.Patterns.Security;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Fuzz;

/// <summary>A message shape the adapters bind bodies to (numbers, booleans, nesting, a list), as a mapping would.</summary>
public sealed record FuzzOrder(string? Id, decimal Amount, bool Express, int Quantity, FuzzCustomer? Customer, List<string>? Tags);

/// <summary>Nested part of <see cref="FuzzOrder"/>.</summary>
public sealed record FuzzCustomer(string? Name, string? Country);

/// <summary>
/// One fuzz target: code reading an untrusted body. Its contract: any input is read, or fails with one of
/// <see cref="Expected"/> (the adapter's documented exception); any other exception, a hang or an allocation past
/// <see cref="AllocationBudget"/> is a finding.
/// </summary>
public sealed class FuzzTarget(string name, string description, Action<byte[]> run, params Type[] expected)
{
    public string Name { get; } = name;

    public string Description { get; } = description;

    public IReadOnlyList<Type> Expected { get; } = expected;

    /// <summary>Bytes one input may allocate on its thread: a fixed 8 MiB, plus 64 bytes per input byte.</summary>
    public static long AllocationBudget(int inputLength) => 8L * 1024 * 1024 + 64L * inputLength;

    /// <summary>Runs one input; returns normally when the contract holds, else throws <see cref="FuzzFinding"/>.</summary>
    public void Execute(ReadOnlySpan<byte> input)
    {
        var bytes = input.ToArray();
        var before = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            run(bytes);
        }
        catch (Exception exception) when (Expected.Any(t => t.IsInstanceOfType(exception)))
        {
            if (string.IsNullOrWhiteSpace(exception.Message))
                throw new FuzzFinding($"{Name}: {exception.GetType().Name} without a message", exception);
        }
        catch (Exception exception) when (exception is not FuzzFinding)
        {
            throw new FuzzFinding($"{Name}: {exception.GetType().FullName} is not one of {string.Join(", ", Expected.Select(t => t.Name))}: {exception.Message}", exception);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        if (allocated > AllocationBudget(bytes.Length))
            throw new FuzzFinding($"{Name}: {bytes.Length} input bytes allocated {allocated} bytes (budget {AllocationBudget(bytes.Length)})");
    }
}

/// <summary>A broken target contract: the fuzzer reports it as a crash and keeps the input.</summary>
public sealed class FuzzFinding(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Every fuzz target, by name (the corpus folder <c>corpus/&lt;name&gt;</c>).</summary>
public static class FuzzTargets
{
    /// <summary>Decompression limit the decompress target runs with (small, so a zip bomb is cut quickly).</summary>
    public const int MaxDecompressedBytes = 256 * 1024;

    static readonly byte[] AesKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    /// <summary>
    /// Keys and serializers, in a class of their own: instrumented code must not run before the fuzzer's shared memory is
    /// set up (Fuzzer.LibFuzzer.Run), so nothing of Integration.Patterns runs when the target list is built.
    /// </summary>
    static class Keys
    {
        static readonly EncryptionKeyRing Ring = EncryptionKeyRing.Create("k1", new Dictionary<string, byte[]> { ["k1"] = AesKey });
        public static readonly AesGcmMessageSerializer Plain = new(Ring);
        public static readonly AesGcmMessageSerializer Compressed = new(Ring, new CompressionOptions());
        public static readonly AesKeyEncryptionKey Kek = new("kek-1", AesKey);
        public static readonly StaticKeyProvider Envelope = new("kek-1", [Kek]);
    }

    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        new("json", "raw JSON: the RawDocuments deserializer, the normalizer's JSON reader and binding, MassTransit's raw JSON deserializer (RawJson routes)",
            Json, typeof(NormalizationException), typeof(SerializationException)),
        new("xml", "raw XML: the RawXml deserializer and the normalizer's XML reader and binding",
            Xml, typeof(NormalizationException), typeof(SerializationException)),
        new("csv", "raw CSV: the normalizer's CSV reader and per-record binding",
            Csv, typeof(NormalizationException)),
        new("decompress", "MessageCompression.Decompress (first byte: gzip, br, lz4, snappy; the rest: the body)",
            Decompress, typeof(SerializationException)),
        new("decrypt", "AesGcmMessageSerializer.Deserialize (first byte: a raw sealed body, a body sealed with the right key, or sealed after gzip)",
            Decrypt, typeof(SerializationException)),
        new("envelope", "EnvelopeEncryption.Open (first byte: forged wrapped key and ciphertext, or a data key of any length wrapped with the right key)",
            EnvelopeOpen, typeof(CryptographicException)),
    ];

    public static FuzzTarget Get(string name) =>
        All.FirstOrDefault(t => t.Name == name) ?? throw new ArgumentException($"no fuzz target '{name}' (targets: {string.Join(", ", All.Select(t => t.Name))})");

    static SendHeaders NewHeaders(params (string Key, object Value)[] values)
    {
        var headers = new DictionarySendHeaders(new Dictionary<string, object?>());
        foreach (var (key, value) in values)
            headers.Set(key, value);
        return headers;
    }

    static string Text(byte[] input) => Encoding.UTF8.GetString(input);

    static void Json(byte[] input)
    {
        var text = Text(input);
        // The RawDocuments deserializer wraps any body; the normalizer then reads and binds it.
        var document = new RawBodyDeserializer(new System.Net.Mime.ContentType("application/json"), asDocument: true)
            .Deserialize(new BytesMessageBody(input), NewHeaders(("Content-Type", "application/json")));
        if (!document.TryGetMessage<RawDocument>(out var raw) || raw?.Text != text)
            throw new FuzzFinding("json: the raw document does not carry the body as it came");
        foreach (var record in FormatReader.Read(FormatReader.Detect("application/json", text), text))
            Touch(FormatReader.Bind<FuzzOrder>(record, MessageFormat.Json));

        // A RawJson route: MassTransit's raw JSON deserializer binds the message type lazily, when the consumer asks for
        // it; a body that does not fit throws System.Text.Json's JsonException there (with the JSON path), which fails the
        // message to _error with that reason like any consumer exception. Anything else is a finding.
        var context = new SystemTextJsonRawMessageSerializer(RawSerializerOptions.AnyMessageType)
            .Deserialize(new BytesMessageBody(input), NewHeaders());
        try
        {
            if (context.TryGetMessage<FuzzOrder>(out var order))
                Touch(order);
        }
        catch (System.Text.Json.JsonException exception) when (!string.IsNullOrWhiteSpace(exception.Message))
        {
        }
        catch (Exception exception) when (exception is not SerializationException)
        {
            throw new FuzzFinding($"json: MassTransit's raw JSON reader threw {exception.GetType().FullName}: {exception.Message}", exception);
        }
    }

    static void Xml(byte[] input)
    {
        var text = Text(input);
        Touch(FormatReader.Bind<FuzzOrder>(FormatReader.XmlToJson(text), MessageFormat.Xml));
        var context = new RawBodyDeserializer(new System.Net.Mime.ContentType("application/xml"), asDocument: false)
            .Deserialize(new BytesMessageBody(input), NewHeaders());
        if (context.TryGetMessage<FuzzOrder>(out var order))
            Touch(order);
    }

    static void Csv(byte[] input)
    {
        foreach (var record in FormatReader.Read(MessageFormat.Csv, Text(input)))
            Touch(FormatReader.Bind<FuzzOrder>(record, MessageFormat.Csv));
    }

    static void Decompress(byte[] input)
    {
        if (input.Length == 0)
            return;
        var encoding = (CompressionEncoding)(input[0] % 4);
        var plain = MessageCompression.Decompress(input.AsSpan(1), encoding, MaxDecompressedBytes);
        if (plain.Length > MaxDecompressedBytes)
            throw new FuzzFinding($"decompress: {plain.Length} bytes came out of {encoding}, past the limit of {MaxDecompressedBytes}");
    }

    static void Decrypt(byte[] input)
    {
        if (input.Length == 0)
            return;
        var body = input.AsSpan(1).ToArray();
        var headers = NewHeaders((MessageEncryption.KeyIdHeader, "k1"));
        SerializerContext context;
        switch (input[0] % 3)
        {
            case 0:
                context = Keys.Plain.Deserialize(new BytesMessageBody(body), headers);
                break;
            case 1:
                context = Keys.Plain.Deserialize(new BytesMessageBody(EnvelopeEncryptionSeal(body, "k1")), headers);
                break;
            default:
                headers.Set(MessageCompression.ContentEncodingHeader, "gzip");
                context = Keys.Compressed.Deserialize(new BytesMessageBody(EnvelopeEncryptionSeal(body, "k1")), headers);
                break;
        }

        // The opened envelope is MassTransit's: it binds the message lazily, and a message that does not fit throws
        // JsonException there (with the JSON path), which fails it to _error like any consumer exception.
        try
        {
            if (context.TryGetMessage<FuzzOrder>(out var order))
                Touch(order);
        }
        catch (System.Text.Json.JsonException exception) when (!string.IsNullOrWhiteSpace(exception.Message))
        {
        }
        catch (Exception exception) when (exception is not SerializationException)
        {
            throw new FuzzFinding($"decrypt: the opened envelope threw {exception.GetType().FullName}: {exception.Message}", exception);
        }
    }

    /// <summary>Seals like the serializer does (nonce, tag, ciphertext; the key id as associated data).</summary>
    static byte[] EnvelopeEncryptionSeal(byte[] plain, string keyId)
    {
        var output = new byte[12 + 16 + plain.Length];
        RandomNumberGenerator.Fill(output.AsSpan(0, 12));
        using var aes = new AesGcm(AesKey, 16);
        aes.Encrypt(output.AsSpan(0, 12), plain, output.AsSpan(28), output.AsSpan(12, 16), Encoding.ASCII.GetBytes(keyId));
        return output;
    }

    static void EnvelopeOpen(byte[] input)
    {
        if (input.Length < 2)
            return;
        var split = Math.Min(input[1], input.Length - 2);
        var first = input.AsSpan(2, split).ToArray();
        var rest = input.AsSpan(2 + split).ToArray();
        var message = (input[0] % 3) switch
        {
            0 => new SealedMessage("kek-1", first, rest),
            1 => new SealedMessage("kek-1", Keys.Kek.Wrap(first), rest),
            _ => new SealedMessage(Encoding.UTF8.GetString(first), rest, rest),
        };
        EnvelopeEncryption.Open(Keys.Envelope, message);
    }

    static void Touch(object? value) => GC.KeepAlive(value?.ToString());
}
