using System.IO.Compression;
using System.Runtime.Serialization;
using K4os.Compression.LZ4.Streams;
using MassTransit;

namespace Integration.Patterns.Compression;

/// <summary>The codecs a compressed body can be encoded with (the AMQP <c>content_encoding</c> names them).</summary>
public enum CompressionEncoding
{
    /// <summary><c>gzip</c> (RFC 1952): every platform reads it.</summary>
    Gzip,

    /// <summary><c>br</c> (Brotli, RFC 7932): smaller than gzip for text, slower to compress.</summary>
    Brotli,

    /// <summary><c>lz4</c>: the LZ4 frame format; fast, for large bodies on a busy host.</summary>
    Lz4,

    /// <summary><c>snappy</c>: the raw Snappy block format; fast.</summary>
    Snappy,
}

/// <summary>What compressed messages look like on the wire, for producers and consumers outside .NET.</summary>
public static class MessageCompression
{
    /// <summary>
    /// Transport header carrying the encoding where the transport has no <c>content_encoding</c> property (the in-memory
    /// transport). On RabbitMQ the AMQP property is written and read; this header is read when the property is absent.
    /// </summary>
    public const string ContentEncodingHeader = "Content-Encoding";

    /// <summary>The wire name of <paramref name="encoding"/>: <c>gzip</c>, <c>br</c>, <c>lz4</c> or <c>snappy</c>.</summary>
    public static string Name(CompressionEncoding encoding) => encoding switch
    {
        CompressionEncoding.Gzip => "gzip",
        CompressionEncoding.Brotli => "br",
        CompressionEncoding.Lz4 => "lz4",
        CompressionEncoding.Snappy => "snappy",
        _ => throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "unknown compression encoding"),
    };

    /// <summary>
    /// Reads a content encoding: true for <c>gzip</c> (or <c>x-gzip</c>), <c>br</c>, <c>lz4</c> and <c>snappy</c>, case-insensitively.
    /// Anything else (none, <c>identity</c>, or a character set such as <c>utf-8</c>, which AMQP clients often put there)
    /// is not a compression and the body is read as it is.
    /// </summary>
    public static bool TryParse(string? contentEncoding, out CompressionEncoding encoding)
    {
        switch (contentEncoding?.Trim().ToLowerInvariant())
        {
            case "gzip" or "x-gzip":
                encoding = CompressionEncoding.Gzip;
                return true;
            case "br":
                encoding = CompressionEncoding.Brotli;
                return true;
            case "lz4":
                encoding = CompressionEncoding.Lz4;
                return true;
            case "snappy":
                encoding = CompressionEncoding.Snappy;
                return true;
            default:
                encoding = default;
                return false;
        }
    }

    /// <summary>Compresses <paramref name="body"/> (what a producer outside the bus does before setting the content encoding).</summary>
    public static byte[] Compress(ReadOnlySpan<byte> body, CompressionEncoding encoding, CompressionLevel level = CompressionLevel.Fastest)
    {
        if (encoding == CompressionEncoding.Snappy)
            return Snappier.Snappy.CompressToArray(body);
        using var output = new MemoryStream();
        using (var stream = Encoder(output, encoding, level))
            stream.Write(body);
        return output.ToArray();
    }

    /// <summary>
    /// Decompresses <paramref name="body"/>, reading at most <paramref name="maxBytes"/> bytes out of it.
    /// </summary>
    /// <exception cref="SerializationException">The body is corrupt, or inflates past <paramref name="maxBytes"/>; the message says which.</exception>
    public static byte[] Decompress(ReadOnlySpan<byte> body, CompressionEncoding encoding, int maxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        var name = Name(encoding);
        try
        {
            if (encoding == CompressionEncoding.Snappy)
            {
                var length = Snappier.Snappy.GetUncompressedLength(body);
                if (length > maxBytes)
                    throw Inflated(name, body.Length, maxBytes);
                return Snappier.Snappy.DecompressToArray(body);
            }

            using var input = new MemoryStream(body.ToArray(), writable: false);
            using var stream = Decoder(input, encoding);
            using var output = new MemoryStream();
            var buffer = new byte[81920];
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (output.Length + read > maxBytes)
                    throw Inflated(name, body.Length, maxBytes);
                output.Write(buffer, 0, read);
            }

            return output.ToArray();
        }
        catch (Exception exception) when (exception is not (SerializationException or OutOfMemoryException))
        {
            // Not chained: MassTransit's fault headers carry the innermost exception's message, and ours is the reason.
            throw new SerializationException($"The body is not valid {name} ({body.Length} bytes): {exception.Message}");
        }
    }

    static SerializationException Inflated(string name, int compressed, int maxBytes) =>
        new($"The {name} body ({compressed} bytes compressed) inflates past the limit of {maxBytes} bytes (MaxDecompressedBytes); it was not read");

    static Stream Encoder(Stream output, CompressionEncoding encoding, CompressionLevel level) => encoding switch
    {
        CompressionEncoding.Gzip => new GZipStream(output, level, leaveOpen: true),
        CompressionEncoding.Brotli => new BrotliStream(output, level, leaveOpen: true),
        CompressionEncoding.Lz4 => LZ4Stream.Encode(output, level == CompressionLevel.SmallestSize ? K4os.Compression.LZ4.LZ4Level.L09_HC : K4os.Compression.LZ4.LZ4Level.L00_FAST, leaveOpen: true),
        _ => throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "no stream encoder"),
    };

    static Stream Decoder(Stream input, CompressionEncoding encoding) => encoding switch
    {
        CompressionEncoding.Gzip => new GZipStream(input, CompressionMode.Decompress),
        CompressionEncoding.Brotli => new BrotliStream(input, CompressionMode.Decompress),
        CompressionEncoding.Lz4 => LZ4Stream.Decode(input),
        _ => throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "no stream decoder"),
    };
}

/// <summary>
/// How an endpoint compresses what it sends and decompresses what it receives
/// (<see cref="CompressionConfigurationExtensions"/>, <c>RouteEndpointOptions.Compression</c>). Every setting is validated when the bus is configured.
/// </summary>
public sealed class CompressionOptions
{
    /// <summary>Encoding of outgoing bodies; null (the default): nothing is compressed, incoming bodies are still decompressed.</summary>
    public CompressionEncoding? Compress { get; set; }

    /// <summary>Outgoing bodies of at least this many bytes (serialized) are compressed; smaller ones go as they are. Default 1 KiB.</summary>
    public int ThresholdBytes { get; set; } = 1024;

    /// <summary>Trade-off between speed and size of outgoing bodies. Default <see cref="CompressionLevel.Fastest"/>.</summary>
    public CompressionLevel Level { get; set; } = CompressionLevel.Fastest;

    /// <summary>
    /// Largest body a compressed message may inflate to, in bytes (a zip bomb stops here and goes to the error queue
    /// with the reason). Default 16 MiB.
    /// </summary>
    public int MaxDecompressedBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>Configuration mistakes, each naming the setting under <paramref name="prefix"/> (e.g. <c>Integration:Compression</c>).</summary>
    public IEnumerable<string> Validate(string prefix = "Compression")
    {
        if (ThresholdBytes < 0)
            yield return $"{prefix}:ThresholdBytes must be 0 or more, not {ThresholdBytes}";
        if (MaxDecompressedBytes < 1)
            yield return $"{prefix}:MaxDecompressedBytes must be at least 1, not {MaxDecompressedBytes}";
        if (Compress is { } encoding && !Enum.IsDefined(encoding))
            yield return $"{prefix}:Compress '{encoding}' is not one of {string.Join(", ", Enum.GetNames<CompressionEncoding>())}";
        if (!Enum.IsDefined(Level))
            yield return $"{prefix}:Level '{Level}' is not a compression level";
    }

    internal CompressionOptions Snapshot()
    {
        var failures = Validate().ToList();
        if (failures.Count > 0)
            throw new ArgumentException(string.Join("; ", failures));
        return new CompressionOptions { Compress = Compress, ThresholdBytes = ThresholdBytes, Level = Level, MaxDecompressedBytes = MaxDecompressedBytes };
    }

    /// <summary>The encoding a message of <paramref name="length"/> bytes is compressed with, or null.</summary>
    internal CompressionEncoding? EncodingFor(int length) => Compress is { } encoding && length >= ThresholdBytes ? encoding : null;
}

/// <summary>Reads and writes the content encoding of a message on any transport.</summary>
internal static class ContentEncodings
{
    /// <summary>The AMQP <c>content_encoding</c> property (RabbitMQ), else the <see cref="MessageCompression.ContentEncodingHeader"/> header.</summary>
    public static string? Read(ReceiveContext context) =>
        Routing.TransportProperties.ReadContentEncoding(context) ?? context.TransportHeaders.Get<string>(MessageCompression.ContentEncodingHeader);

    /// <summary>Marks a sent body as encoded: the AMQP property on RabbitMQ, else the header.</summary>
    public static void Write(SendContext context, CompressionEncoding encoding)
    {
        var name = MessageCompression.Name(encoding);
        if (!Routing.TransportProperties.WriteContentEncoding(context, name))
            context.Headers.Set(MessageCompression.ContentEncodingHeader, name);
    }

    /// <summary>True when the message being sent already names an encoding (a forwarded body): it is never compressed twice.</summary>
    public static bool IsEncoded(SendContext context) =>
        Routing.TransportProperties.ReadContentEncoding(context) is { Length: > 0 } || context.Headers.Get<string>(MessageCompression.ContentEncodingHeader) is { Length: > 0 };

    /// <summary>Decodes a body by the encoding its message names; other bodies come back as they are.</summary>
    public static byte[] Decode(byte[] body, string? contentEncoding, CompressionOptions options) =>
        MessageCompression.TryParse(contentEncoding, out var encoding) ? MessageCompression.Decompress(body, encoding, options.MaxDecompressedBytes) : body;

    /// <summary>Compresses a serialized body when the options say so, and marks the message.</summary>
    public static byte[] Encode(byte[] body, SendContext context, CompressionOptions options)
    {
        if (options.EncodingFor(body.Length) is not { } encoding || IsEncoded(context))
            return body;
        var compressed = MessageCompression.Compress(body, encoding, options.Level);
        Write(context, encoding);
        return compressed;
    }
}
