namespace Integration.Sagas.Scheduling;

/// <summary>Keys of the Quartz job data that carries a scheduled message until it fires.</summary>
static class ScheduledMessageData
{
    public const string Destination = "Destination";
    public const string Body = "Body";
    public const string ContentType = "ContentType";
    public const string MessageTypes = "MessageType";
    public const string MessageId = "MessageId";
    public const string CorrelationId = "CorrelationId";
    public const string ConversationId = "ConversationId";
    public const string InitiatorId = "InitiatorId";
    public const string RequestId = "RequestId";
    public const string SourceAddress = "SourceAddress";
    public const string ResponseAddress = "ResponseAddress";
    public const string FaultAddress = "FaultAddress";
    public const string ExpirationTime = "ExpirationTime";
    public const string TokenId = "TokenId";
    public const string Headers = "HeadersAsJson";

    /// <summary>Name of the one durable Quartz job every scheduled message's trigger fires.</summary>
    public const string JobName = "integration-scheduled-message";

    /// <summary>Trigger name prefix of recurring schedules.</summary>
    public const string RecurringPrefix = "recurring.";
}
