using System.Net.Mime;
using System.Text.Json;
using MassTransit;
using MassTransit.Serialization;
using Microsoft.Extensions.Logging;
using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// Fires a scheduled message: sends the stored body to its destination with the original message id, correlation
/// ids, headers and the scheduling token (so a state machine recognizes its own timeout). A failed send throws, so
/// Quartz keeps the trigger and fires it again.
/// </summary>
sealed partial class ScheduledMessageJob(IBus bus, SagasMetrics metrics, ILogger<ScheduledMessageJob> logger) : IJob
{
    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        var data = context.MergedJobDataMap;
        string? Get(string key) => data.TryGetValue(key, out var value) ? value?.ToString() : null;
        Guid? GetGuid(string key) => Guid.TryParse(Get(key), out var id) ? id : null;
        Uri? GetUri(string key) => Get(key) is { Length: > 0 } text ? new Uri(text) : null;

        var destination = GetUri(ScheduledMessageData.Destination)
            ?? throw new JobExecutionException($"Scheduled message {context.Trigger.Key} has no destination");
        var contentType = new ContentType(Get(ScheduledMessageData.ContentType) ?? SystemTextJsonMessageSerializer.JsonContentType.ToString());
        var body = Get(ScheduledMessageData.Body) ?? "";
        var messageTypes = Get(ScheduledMessageData.MessageTypes)?.Split(';', StringSplitOptions.RemoveEmptyEntries) ?? [];
        var tokenId = GetGuid(ScheduledMessageData.TokenId);
        var headers = Get(ScheduledMessageData.Headers) is { Length: > 0 } json
            ? JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json) ?? []
            : [];

        try
        {
            var endpoint = await bus.GetSendEndpoint(destination).ConfigureAwait(false);
            await endpoint.Send(new SerializedMessageBody(), Pipe.Execute<SendContext>(send =>
            {
                var deserializer = send.Serialization.GetMessageDeserializer(contentType);
                var serializerContext = deserializer.Deserialize(deserializer.GetMessageBody(body), EmptyHeaders.Instance, destination);

                foreach (var (key, value) in headers)
                    send.Headers.Set(key, ToHeaderValue(value));
                if (GetGuid(ScheduledMessageData.MessageId) is { } messageId)
                    send.MessageId = messageId;
                send.CorrelationId = GetGuid(ScheduledMessageData.CorrelationId);
                send.ConversationId = GetGuid(ScheduledMessageData.ConversationId);
                send.InitiatorId = GetGuid(ScheduledMessageData.InitiatorId);
                send.RequestId = GetGuid(ScheduledMessageData.RequestId);
                send.SourceAddress = GetUri(ScheduledMessageData.SourceAddress);
                send.ResponseAddress = GetUri(ScheduledMessageData.ResponseAddress);
                send.FaultAddress = GetUri(ScheduledMessageData.FaultAddress);
                if (DateTime.TryParse(Get(ScheduledMessageData.ExpirationTime), null, System.Globalization.DateTimeStyles.RoundtripKind, out var expires))
                    send.TimeToLive = expires.ToUniversalTime() - DateTime.UtcNow;
                if (tokenId.HasValue)
                    send.Headers.Set(MessageHeaders.SchedulingTokenId, tokenId.Value.ToString("D"));
                if (messageTypes.Length > 0)
                    send.SupportedMessageTypes = messageTypes;
                send.Serializer = serializerContext.GetMessageSerializer();
            }), cancellationToken).ConfigureAwait(false);

            metrics.Delivered.Add(1);
            LogDelivered(logger, context.Trigger.Key.ToString(), destination);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            LogFailed(logger, exception, context.Trigger.Key.ToString(), destination);
            throw new JobExecutionException($"Scheduled message {context.Trigger.Key} could not be sent to {destination}", exception)
            {
                RefireImmediately = context.RefireCount < 5,
            };
        }
    }

    static object? ToHeaderValue(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Number when value.TryGetInt64(out var number) => number,
        JsonValueKind.Number => value.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Null or JsonValueKind.Undefined => null,
        _ => value.GetRawText(),
    };

    [LoggerMessage(Level = LogLevel.Debug, Message = "Delivered scheduled message {Key} to {Destination}")]
    static partial void LogDelivered(ILogger logger, string key, Uri destination);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Scheduled message {Key} could not be sent to {Destination}; Quartz will fire it again")]
    static partial void LogFailed(ILogger logger, Exception exception, string key, Uri destination);
}
