using System.Text;
using System.Text.Json;

namespace Integration.Testing;

/// <summary>
/// A message as a plain AMQP client reads it: body, content type and headers (header values as strings), with the
/// MassTransit envelope's identifiers and the reason headers MassTransit puts on error and skipped queues.
/// </summary>
public sealed class BrokerMessage
{
    internal BrokerMessage(string queue, string exchange, string routingKey, byte[] body, RabbitMQ.Client.IReadOnlyBasicProperties properties)
    {
        Queue = queue;
        Exchange = exchange;
        RoutingKey = routingKey;
        Body = body;
        ContentType = properties.ContentType;
        ContentEncoding = properties.ContentEncoding;
        Headers = (properties.Headers ?? new Dictionary<string, object?>()).ToDictionary(h => h.Key, h => HeaderText(h.Value), StringComparer.Ordinal);
        var envelope = ReadEnvelope(body);
        MessageId = envelope.MessageId ?? properties.MessageId ?? HeaderOrNull("MessageId");
        ConversationId = envelope.ConversationId ?? HeaderOrNull("ConversationId");
        CorrelationId = envelope.CorrelationId ?? properties.CorrelationId ?? HeaderOrNull("CorrelationId");
        MessageTypes = envelope.MessageTypes ?? (HeaderOrNull("MT-MessageType") is { } types ? types.Split(';') : []);
    }

    /// <summary>The queue it was read from (for a watched queue: the queue watched, not the private copy).</summary>
    public string Queue { get; }
    /// <summary>The exchange it was published to (empty: the default exchange, straight to a queue).</summary>
    public string Exchange { get; }
    /// <summary>The routing key it was published with.</summary>
    public string RoutingKey { get; }
    /// <summary>The body as sent.</summary>
    public byte[] Body { get; }
    /// <summary>The body as UTF-8 text.</summary>
    public string Text => Encoding.UTF8.GetString(Body);
    /// <summary>The AMQP content type (null when the producer set none).</summary>
    public string? ContentType { get; }
    /// <summary>The AMQP content encoding.</summary>
    public string? ContentEncoding { get; }
    /// <summary>The AMQP headers, each value as text (byte arrays read as UTF-8).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; }
    /// <summary>The message id: the MassTransit envelope's, else the AMQP property's, else the <c>MessageId</c> header.</summary>
    public string? MessageId { get; }
    /// <summary>The MassTransit conversation id (envelope or header); null for a message outside MassTransit.</summary>
    public string? ConversationId { get; }
    /// <summary>The correlation id (envelope, AMQP property or header).</summary>
    public string? CorrelationId { get; }
    /// <summary>The MassTransit message type URNs (envelope or <c>MT-MessageType</c> header), empty when unknown.</summary>
    public IReadOnlyList<string> MessageTypes { get; }
    /// <summary>Why MassTransit moved it to an error or skipped queue (<c>MT-Reason</c>: <c>fault</c> on an error queue, <c>dead-letter</c> on a skipped queue).</summary>
    public string? Reason => HeaderOrNull("MT-Reason");
    /// <summary>The fault's exception message (<c>MT-Fault-Message</c>) on an error queue.</summary>
    public string? FaultMessage => HeaderOrNull("MT-Fault-Message");
    /// <summary>The fault's exception type (<c>MT-Fault-ExceptionType</c>) on an error queue.</summary>
    public string? FaultExceptionType => HeaderOrNull("MT-Fault-ExceptionType");

    /// <summary>True when one of <see cref="MessageTypes"/> is <typeparamref name="T"/>'s MassTransit message type URN.</summary>
    public bool Is<T>() => MessageTypes.Contains(MassTransit.MessageUrn.ForTypeString<T>(), StringComparer.Ordinal);

    /// <summary>
    /// The message as <typeparamref name="T"/>: the <c>message</c> of a MassTransit envelope, else the whole body, read
    /// as JSON with web defaults (camel case, case-insensitive).
    /// </summary>
    public T? Deserialize<T>()
    {
        using var document = JsonDocument.Parse(Body);
        var element = document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("message", out var inner)
                      && document.RootElement.TryGetProperty("messageType", out _)
            ? inner
            : document.RootElement;
        return element.Deserialize<T>(new JsonSerializerOptions(JsonSerializerDefaults.Web));
    }

    /// <summary>One line for a timeout report: queue, type, ids, reason, and the start of the body.</summary>
    public override string ToString()
    {
        var text = EnvelopedMessage() ?? Text.ReplaceLineEndings(" ");
        var type = MessageTypes.Count > 0 ? MessageTypes[0].Replace("urn:message:", "", StringComparison.Ordinal) : ContentType ?? "no content type";
        return $"[{(Exchange.Length > 0 ? Exchange : Queue)}] {type} id={MessageId ?? "-"}" +
               (ConversationId is null ? "" : $" conversation={ConversationId}") +
               (Reason is null ? "" : $" reason={Reason}") + (FaultMessage is null ? "" : $" fault=\"{FaultMessage}\"") +
               $" body={(text.Length > 120 ? text[..120] + "..." : text)}";
    }

    string? EnvelopedMessage()
    {
        if (MessageTypes.Count == 0 || Body.Length == 0 || Body[0] != (byte)'{')
            return null;
        try
        {
            using var document = JsonDocument.Parse(Body);
            return document.RootElement.TryGetProperty("message", out var message) ? JsonSerializer.Serialize(message) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    string? HeaderOrNull(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    static string HeaderText(object? value) => value switch
    {
        null => "",
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        System.Collections.IEnumerable list and not string => string.Join(",", list.Cast<object?>().Select(HeaderText)),
        _ => value.ToString() ?? "",
    };

    static (string? MessageId, string? ConversationId, string? CorrelationId, string[]? MessageTypes) ReadEnvelope(byte[] body)
    {
        if (body.Length == 0 || body[0] != (byte)'{')
            return default;
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (!root.TryGetProperty("messageType", out var types) || types.ValueKind != JsonValueKind.Array)
                return default;
            return (Text(root, "messageId"), Text(root, "conversationId"), Text(root, "correlationId"),
                types.EnumerateArray().Select(t => t.GetString() ?? "").ToArray());
        }
        catch (JsonException)
        {
            return default;
        }

        static string? Text(JsonElement root, string name) =>
            root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
    }
}
