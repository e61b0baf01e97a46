using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MassTransit;

namespace Integration.Outbox.Model;

/// <summary>
/// What a message carried besides its body when it was written through MassTransit's send pipe (the bus outbox, a
/// consumer's or a saga's publishes): the caller's headers and the envelope fields the relay must put back, so a
/// message delivered from the outbox looks on the wire as it would have without the outbox — same conversation, same
/// initiator (causation), same request/response addresses, same custom headers, same time-to-live.
/// Stored as JSON in <see cref="OutboxMessage.Envelope"/>. Every message written gets one: a message with no conversation
/// starts one (MassTransit would at the transport), a message written in a consumer continues the consumed one's.
/// </summary>
sealed class OutboxEnvelope
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Headers that trace context is re-created for by the relay (continuing the writer's trace), never copied.</summary>
    static readonly HashSet<string> Regenerated = new(StringComparer.OrdinalIgnoreCase) { "traceparent", "tracestate", "Diagnostic-Id", "MT-Activity-Id", "Correlation-Context", "baggage" };

    /// <summary>Custom headers, as JSON scalars (strings, numbers, booleans); other values as their invariant text.</summary>
    public Dictionary<string, object?>? Headers { get; set; }

    /// <summary>MassTransit's conversation id.</summary>
    public Guid? ConversationId { get; set; }

    /// <summary>The message that caused this one (causation id).</summary>
    public Guid? InitiatorId { get; set; }

    /// <summary>The request this message answers or belongs to.</summary>
    public Guid? RequestId { get; set; }

    /// <summary>Where the message was produced (the consumer's endpoint).</summary>
    public Uri? SourceAddress { get; set; }

    /// <summary>Where responses go.</summary>
    public Uri? ResponseAddress { get; set; }

    /// <summary>Where faults go.</summary>
    public Uri? FaultAddress { get; set; }

    /// <summary>Time to live, in milliseconds.</summary>
    public long? TimeToLiveMilliseconds { get; set; }

    /// <summary>Takes the envelope from a send context after MassTransit's send pipe ran.</summary>
    public static OutboxEnvelope From(SendContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Dictionary<string, object?>? headers = null;
        foreach (var header in context.Headers.GetAll())
        {
            if (Regenerated.Contains(header.Key))
                continue;
            (headers ??= new Dictionary<string, object?>(StringComparer.Ordinal))[header.Key] = Scalar(header.Value);
        }

        return new OutboxEnvelope
        {
            Headers = headers,
            // MassTransit gives a message without one a new conversation when it reaches the transport; do it here, so the
            // row already shows the conversation every message it causes will carry.
            ConversationId = context.ConversationId ?? NewId.NextGuid(),
            InitiatorId = context.InitiatorId,
            RequestId = context.RequestId,
            SourceAddress = context.SourceAddress,
            ResponseAddress = context.ResponseAddress,
            FaultAddress = context.FaultAddress,
            TimeToLiveMilliseconds = context.TimeToLive is { } ttl ? (long)ttl.TotalMilliseconds : null,
        };
    }

    /// <summary>Puts the envelope back on the relay's send context.</summary>
    public void ApplyTo(SendContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Headers is not null)
        {
            foreach (var (key, value) in Headers)
                context.Headers.Set(key, value is JsonElement element ? FromJson(element) : value);
        }

        if (ConversationId is { } conversation)
            context.ConversationId = conversation;
        if (InitiatorId is { } initiator)
            context.InitiatorId = initiator;
        if (RequestId is { } request)
            context.RequestId = request;
        if (SourceAddress is not null)
            context.SourceAddress = SourceAddress;
        if (ResponseAddress is not null)
            context.ResponseAddress = ResponseAddress;
        if (FaultAddress is not null)
            context.FaultAddress = FaultAddress;
        if (TimeToLiveMilliseconds is { } ttl)
            context.TimeToLive = TimeSpan.FromMilliseconds(ttl);
    }

    /// <summary>The JSON stored in the row.</summary>
    public string Serialize() => JsonSerializer.Serialize(this, Json);

    /// <summary>Reads a stored envelope; null for null.</summary>
    public static OutboxEnvelope? Deserialize(string? json) => json is null ? null : JsonSerializer.Deserialize<OutboxEnvelope>(json, Json);

    static object? Scalar(object? value) => value switch
    {
        null => null,
        string or bool or long or int or short or byte or double or float or decimal => value,
        DateTimeOffset at => at.ToString("O", CultureInfo.InvariantCulture),
        DateTime at => at.ToString("O", CultureInfo.InvariantCulture),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };

    static object? FromJson(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.TryGetInt64(out var integer) ? integer : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        _ => element.GetRawText(),
    };
}
