using System.Net.Mime;
using MassTransit;
using MassTransit.Configuration;
using MassTransit.Serialization;

namespace Integration.Patterns.Compression;

/// <summary>
/// Switches compression on for a bus or one receive endpoint (typed consumers, MassTransit's JSON envelope). Bodies whose
/// content encoding is <c>gzip</c>, <c>br</c>, <c>lz4</c> or <c>snappy</c> are decompressed before they are deserialized;
/// with <see cref="CompressionOptions.Compress"/> set, bodies of at least <see cref="CompressionOptions.ThresholdBytes"/>
/// are compressed and their encoding set. A body that is corrupt or inflates past
/// <see cref="CompressionOptions.MaxDecompressedBytes"/> fails deserialization and goes to the endpoint's <c>_error</c>
/// queue with the reason in its fault headers; it is not retried. Routes set <c>RouteEndpointOptions.Compression</c>
/// instead; with encryption, pass the options to <c>UseAesGcmEncryption</c> (compress, then encrypt).
/// </summary>
public static class CompressionConfigurationExtensions
{
    /// <summary>Compression for every endpoint of the bus and everything it sends.</summary>
    /// <exception cref="ArgumentException">An option is out of range; the message names it.</exception>
    public static void UseMessageCompression(this IBusFactoryConfigurator configurator, CompressionOptions options)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(options);
        var factory = new CompressionSerializerFactory(new SystemTextJsonMessageSerializerFactory(), options.Snapshot());
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: true);
    }

    /// <summary>Compression for this receive endpoint and what its consumers send.</summary>
    /// <exception cref="ArgumentException">An option is out of range; the message names it.</exception>
    public static void UseMessageCompression(this IReceiveEndpointConfigurator configurator, CompressionOptions options)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(options);
        var factory = new CompressionSerializerFactory(new SystemTextJsonMessageSerializerFactory(), options.Snapshot());
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: true);
    }
}

/// <summary>Wraps a serializer factory: its serializer compresses, its deserializer decompresses, for the same content type.</summary>
internal sealed class CompressionSerializerFactory(ISerializerFactory inner, CompressionOptions options) : ISerializerFactory
{
    public ContentType ContentType => inner.ContentType;

    public IMessageSerializer CreateSerializer() => new CompressingSerializer(inner.CreateSerializer(), options);

    public IMessageDeserializer CreateDeserializer() => new DecompressingDeserializer(inner.CreateDeserializer(), options);
}

/// <summary>Serializes with the inner serializer, then compresses a body over the threshold and sets its content encoding.</summary>
internal sealed class CompressingSerializer(IMessageSerializer inner, CompressionOptions options) : IMessageSerializer
{
    public ContentType ContentType => inner.ContentType;

    public MessageBody GetMessageBody<T>(SendContext<T> context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        var body = inner.GetMessageBody(context).GetBytes();
        return new BytesMessageBody(ContentEncodings.Encode(body, context, options));
    }
}

/// <summary>Decompresses a body its content encoding says is compressed, then hands it to the inner deserializer.</summary>
internal sealed class DecompressingDeserializer(IMessageDeserializer inner, CompressionOptions options) : IMessageDeserializer
{
    public ContentType ContentType => inner.ContentType;

    public void Probe(ProbeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scope = context.CreateScope("decompress");
        scope.Add("maxDecompressedBytes", options.MaxDecompressedBytes);
        if (options.Compress is { } encoding)
        {
            scope.Add("compress", MessageCompression.Name(encoding));
            scope.Add("thresholdBytes", options.ThresholdBytes);
        }

        inner.Probe(scope);
    }

    public ConsumeContext Deserialize(ReceiveContext receiveContext)
    {
        ArgumentNullException.ThrowIfNull(receiveContext);
        if (!MessageCompression.TryParse(ContentEncodings.Read(receiveContext), out var encoding))
            return inner.Deserialize(receiveContext);
        var plain = MessageCompression.Decompress(receiveContext.Body.GetBytes(), encoding, options.MaxDecompressedBytes);
        receiveContext.GetOrAddPayload(() => new DecodedBody(plain));
        return new BodyConsumeContext(receiveContext, inner.Deserialize(new BytesMessageBody(plain), receiveContext.TransportHeaders, receiveContext.InputAddress));
    }

    public SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(headers);
        var plain = ContentEncodings.Decode(body.GetBytes(), headers.Get<string>(MessageCompression.ContentEncodingHeader), options);
        return inner.Deserialize(new BytesMessageBody(plain), headers, destinationAddress);
    }

    public MessageBody GetMessageBody(string text) => inner.GetMessageBody(text);
}

/// <summary>The decompressed body of a received message (a payload of its receive context), for steps that pass it on.</summary>
internal sealed class DecodedBody(byte[] bytes)
{
    public byte[] Bytes { get; } = bytes;
}
