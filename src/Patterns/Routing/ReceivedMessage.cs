using System.Collections.Frozen;
using System.Net.Mime;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Routing;

/// <summary>
/// The message a route received (a payload of the consume context, remembered before its first step), so that a step can
/// tell whether the message it sends is still that one. On a raw route (<see cref="RouteEndpointOptions.RawJson"/>,
/// <see cref="RouteEndpointOptions.RawXml"/>, <see cref="RouteEndpointOptions.RawDocuments"/>) the steps that pass it on
/// (router, filter, wire tap, recipient list, To…) send the very bytes, content type, content encoding and headers the
/// producer sent (a body that arrived compressed: decompressed, then compressed again if the route compresses what it
/// sends). Once a step replaced the message (a translator, an enricher, a splitter, a claim check), the new
/// message is serialized as the route's endpoint serializes.
/// </summary>
internal sealed class ReceivedMessage
{
    /// <summary>Transport headers that describe one delivery, or are written again for the new one, and are never copied.</summary>
    static readonly FrozenSet<string> NotCopied = new[]
    {
        MessageHeaders.MessageId, MessageHeaders.CorrelationId, MessageHeaders.ConversationId, MessageHeaders.RequestId, MessageHeaders.TransportMessageId,
        "Content-Type", "RabbitMQ-ExchangeName", "RabbitMQ-RoutingKey", "RabbitMQ-DeliveryTag", "RabbitMQ-ConsumerTag",
        "x-delivery-count", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-received-from",
        "traceparent", "tracestate", "Diagnostic-Id", "Correlation-Context", "baggage",
        History.MessageHistory.Header,
    }.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    readonly ReceiveContext _receive;
    readonly Lazy<MessageBody> _body;
    readonly Compression.CompressionOptions? _compression;
    readonly bool _decoded;

    ReceivedMessage(object message, ReceiveContext receive, bool raw, IMessageSerializer? serializer, Compression.CompressionOptions? compression)
    {
        Message = message;
        IsRaw = raw;
        Serializer = serializer;
        _receive = receive;
        _compression = compression;
        // A body that arrived compressed goes on as the producer meant it (decompressed), in the route's own encoding.
        _decoded = receive.TryGetPayload(out Compression.DecodedBody? decoded);
        _body = decoded is not null
            ? new Lazy<MessageBody>(new BytesMessageBody(decoded.Bytes))
            : new Lazy<MessageBody>(() => new BytesMessageBody(receive.Body.GetBytes()));
    }

    /// <summary>The message as the route's first step got it.</summary>
    public object Message { get; }

    /// <summary>The route reads raw bodies: an unchanged message goes on as it arrived.</summary>
    public bool IsRaw { get; }

    /// <summary>How the route's endpoint serializes a new message (null: the bus's default), for sends outside the consume context.</summary>
    public IMessageSerializer? Serializer { get; }

    /// <summary>Remembers what <paramref name="context"/> received; a route does this before its first step.</summary>
    public static void Remember(ConsumeContext context, object message, bool raw, IMessageSerializer? serializer,
        Compression.CompressionOptions? compression = null) =>
        context.GetOrAddPayload(() => new ReceivedMessage(message, context.ReceiveContext, raw, serializer, compression));

    /// <summary>What the route received, or null outside a route.</summary>
    public static ReceivedMessage? Of(ConsumeContext context) => context.TryGetPayload(out ReceivedMessage? received) ? received : null;

    /// <summary>True when <paramref name="message"/> is the message that was received.</summary>
    public bool IsUnchanged(object message) => ReferenceEquals(Message, message);

    /// <summary>Sends the received body, content type, content encoding and headers; the caller's headers are set after.</summary>
    public void ApplyTo(SendContext send)
    {
        IMessageSerializer serializer = new ForwardedBodySerializer(_body.Value, _receive.ContentType);
        if (_compression?.Compress is not null)   // never twice: a body that keeps another encoding goes as it is
            serializer = new Compression.CompressingSerializer(serializer, _compression);
        send.Serializer = serializer;
        send.ContentType = _receive.ContentType!;
        foreach (var header in _receive.TransportHeaders.GetAll())
        {
            if (header.Value is null || header.Key.StartsWith("MT-", StringComparison.OrdinalIgnoreCase) || NotCopied.Contains(header.Key))
                continue;
            if (_decoded && string.Equals(header.Key, Compression.MessageCompression.ContentEncodingHeader, StringComparison.OrdinalIgnoreCase))
                continue;
            send.Headers.Set(header.Key, header.Value);
        }

        if (!_decoded)
            TransportProperties.CopyContentEncoding(_receive, send);
    }

    /// <summary>
    /// Sends the received message as it arrived (body, content type, content encoding, headers), for a move to another
    /// queue such as <c>_skipped</c>; the caller's headers are set after.
    /// </summary>
    public static void Forward(ReceiveContext receive, SendContext send)
    {
        ArgumentNullException.ThrowIfNull(receive);
        ArgumentNullException.ThrowIfNull(send);
        send.Serializer = new ForwardedBodySerializer(new BytesMessageBody(receive.Body.GetBytes()), receive.ContentType);
        if (receive.ContentType is { } contentType)
            send.ContentType = contentType;
        foreach (var header in receive.TransportHeaders.GetAll())
        {
            if (header.Value is null || NotCopied.Contains(header.Key))
                continue;
            send.Headers.Set(header.Key, header.Value);
        }

        TransportProperties.CopyContentEncoding(receive, send);
    }

    /// <summary>Writes a body that was serialized already (the received one) with MassTransit's raw transport headers.</summary>
    sealed class ForwardedBodySerializer(MessageBody body, ContentType? contentType) : RawMessageSerializer, IMessageSerializer
    {
        public ContentType ContentType { get; } = contentType ?? new ContentType("application/octet-stream");

        public MessageBody GetMessageBody<T>(SendContext<T> context)
            where T : class
        {
            SetRawMessageHeaders(context);
            return body;
        }
    }
}

/// <summary>
/// The AMQP <c>content_encoding</c> property, which MassTransit neither exposes on a received message nor writes on a sent
/// one: read from the RabbitMQ receive context's <c>Properties</c> and written to the RabbitMQ send context's
/// <c>BasicProperties</c>, found by name so that this package needs no transport reference. On other transports (and any
/// MassTransit version without those properties) it does nothing.
/// </summary>
internal static class TransportProperties
{
    public static void CopyContentEncoding(ReceiveContext receive, SendContext send)
    {
        if (ReadContentEncoding(receive) is { } encoding)
            WriteContentEncoding(send, encoding);
    }

    /// <summary>The received message's AMQP <c>content_encoding</c>, or null (none, or not RabbitMQ).</summary>
    public static string? ReadContentEncoding(ReceiveContext receive) =>
        Property(receive, "Properties") is { } received && Property(received, "ContentEncoding") is string { Length: > 0 } encoding ? encoding : null;

    /// <summary>The AMQP <c>content_encoding</c> a message being sent has so far, or null.</summary>
    public static string? ReadContentEncoding(SendContext send) =>
        Property(send, "BasicProperties") is { } properties && Property(properties, "ContentEncoding") is string { Length: > 0 } encoding ? encoding : null;

    /// <summary>Sets the AMQP <c>content_encoding</c> of a message being sent; false when the transport has no such property.</summary>
    public static bool WriteContentEncoding(SendContext send, string encoding)
    {
        if (Property(send, "BasicProperties") is not { } properties || properties.GetType().GetProperty("ContentEncoding") is not { CanWrite: true } property)
            return false;
        property.SetValue(properties, encoding);
        return true;
    }

    static object? Property(object target, string name) => target.GetType().GetProperty(name)?.GetValue(target);
}
