using System.Text;
using System.Text.Json;
using Integration.Hosting;
using Integration.Outbox.Leases;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Operations;

/// <summary>Message store settings, bound from <c>Integration:MessageStore</c>.</summary>
public sealed class MessageStoreOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:MessageStore";

    /// <summary>Off: nothing is stored (the queue is not even declared).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The store's queue; it is bound to every exchange of <see cref="Exchanges"/> — a wire tap at the broker.</summary>
    public string Queue { get; set; } = "message-store";

    /// <summary>
    /// The flows to keep, as exchange names: a route's destination queue (e.g. <c>audit</c>, <c>parts-general</c>) or a
    /// published message type as MassTransit names its exchange (e.g. <c>Acme.Contracts:OrderSubmitted</c>).
    /// </summary>
    public List<string> Exchanges { get; set; } = [];

    /// <summary>Leave out test messages (bodies carrying a probe id, see <see cref="ProbeOptions"/>); default true.</summary>
    public bool SkipTestMessages { get; set; } = true;

    /// <summary>Stored messages older than this are deleted (hours). 0 keeps them forever.</summary>
    public int RetentionHours { get; set; } = 72;

    internal static IEnumerable<string> Validate(MessageStoreOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Queue))
            yield return $"{Section}:Queue: the store needs a queue name";
        if (options.Exchanges.Any(string.IsNullOrWhiteSpace))
            yield return $"{Section}:Exchanges: an exchange name is empty";
        if (options.RetentionHours < 0)
            yield return $"{Section}:RetentionHours must not be negative, not {options.RetentionHours}";
    }
}

/// <summary>One stored copy of a message: where it was published, its headers, history and body.</summary>
public sealed class StoredMessage
{
    /// <summary>Sequence.</summary>
    public long Id { get; set; }

    /// <summary>When the store received it.</summary>
    public DateTimeOffset StoredAt { get; set; }

    /// <summary>Exchange it was published to (the flow).</summary>
    public string Exchange { get; set; } = "";

    /// <summary>Message id.</summary>
    public string? MessageId { get; set; }

    /// <summary>Correlation id.</summary>
    public string? CorrelationId { get; set; }

    /// <summary>Conversation id: all messages caused by one first message.</summary>
    public string? ConversationId { get; set; }

    /// <summary>Id of the message whose consumer sent this one (a route's copies share it).</summary>
    public string? InitiatorId { get; set; }

    /// <summary>Message type (MassTransit URN, or the AMQP type property).</summary>
    public string? MessageType { get; set; }

    /// <summary>AMQP content type.</summary>
    public string? ContentType { get; set; }

    /// <summary>Transport headers and properties as a JSON object.</summary>
    public string Headers { get; set; } = "{}";

    /// <summary>The message history header (JSON array), when the message came through a route.</summary>
    public string? History { get; set; }

    /// <summary>The body as published.</summary>
    public byte[] Body { get; set; } = [];
}

/// <summary>A stored message as the control bus lists it.</summary>
record StoredMessageView(long Id, DateTimeOffset StoredAt, string Exchange, string? MessageId, string? CorrelationId, string? ConversationId,
    string? InitiatorId, string? MessageType, string? ContentType, JsonElement Headers, JsonElement? History, string BodyPreview, int BodyBytes);

/// <summary>What to find in the store.</summary>
sealed record MessageQuery(string? CorrelationId, string? MessageType, DateTimeOffset? From, DateTimeOffset? To, string? Exchange, int Take = 50, IReadOnlyList<long>? Ids = null);

/// <summary>Reads, replays and prunes the message store (table <c>message_store</c>).</summary>
sealed class MessageStore(IServiceScopeFactory scopes, OperationsDatabase database, IOptions<RabbitMqOptions> rabbit, TimeProvider time)
{
    /// <summary>Header set on replayed copies: the id of the stored message.</summary>
    public const string ReplayedHeader = "Integration-Replayed-From-Store";

    string? _insert;

    /// <summary>Stores a copy; a duplicate (same message id on the same exchange, e.g. a redelivery) is ignored.</summary>
    public async Task AddAsync(StoredMessage message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        // Stored already (the broker redelivered it): nothing to do, and nothing for the logs to call an error.
        await db.Database.ExecuteSqlRawAsync(_insert ??= InsertStatement(db.Model), [
            new NpgsqlParameter<DateTimeOffset>("p0", message.StoredAt), new NpgsqlParameter<string>("p1", message.Exchange),
            new NpgsqlParameter<string?>("p2", message.MessageId), new NpgsqlParameter<string?>("p3", message.CorrelationId),
            new NpgsqlParameter<string?>("p4", message.ConversationId), new NpgsqlParameter<string?>("p5", message.InitiatorId),
            new NpgsqlParameter<string?>("p6", message.MessageType), new NpgsqlParameter<string?>("p7", message.ContentType),
            new NpgsqlParameter<string>("p8", message.Headers), new NpgsqlParameter<string?>("p9", message.History),
            new NpgsqlParameter<byte[]>("p10", message.Body)], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The insert, with the table and column names the model maps (schema included).</summary>
    static string InsertStatement(IModel model)
    {
        var entity = model.FindEntityType(typeof(StoredMessage))!;
        var table = StoreObjectIdentifier.Table(entity.GetTableName()!, entity.GetSchema());
        string Column(string property) => $"\"{entity.FindProperty(property)!.GetColumnName(table)}\"";
        var name = entity.GetSchema() is { } schema ? $"\"{schema}\".\"{table.Name}\"" : $"\"{table.Name}\"";
        string[] columns = [nameof(StoredMessage.StoredAt), nameof(StoredMessage.Exchange), nameof(StoredMessage.MessageId), nameof(StoredMessage.CorrelationId),
            nameof(StoredMessage.ConversationId), nameof(StoredMessage.InitiatorId), nameof(StoredMessage.MessageType), nameof(StoredMessage.ContentType),
            nameof(StoredMessage.Headers), nameof(StoredMessage.History), nameof(StoredMessage.Body)];
        return $"INSERT INTO {name} ({string.Join(", ", columns.Select(Column))}) VALUES ({{0}}, {{1}}, {{2}}, {{3}}, {{4}}, {{5}}, {{6}}, {{7}}, {{8}}::jsonb, {{9}}::jsonb, {{10}}) "
            + $"ON CONFLICT ({Column(nameof(StoredMessage.MessageId))}, {Column(nameof(StoredMessage.Exchange))}) DO NOTHING";
    }

    /// <summary>Newest first, filtered by correlation id, type (substring), time range and exchange.</summary>
    public async Task<IReadOnlyList<StoredMessage>> FindAsync(MessageQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        var messages = db.Set<StoredMessage>().AsNoTracking();
        if (query.Ids is { Count: > 0 } ids)
            messages = messages.Where(m => ids.Contains(m.Id));
        if (!string.IsNullOrWhiteSpace(query.CorrelationId))
            messages = messages.Where(m => m.CorrelationId == query.CorrelationId || m.ConversationId == query.CorrelationId);
        if (!string.IsNullOrWhiteSpace(query.MessageType))
            messages = messages.Where(m => m.MessageType != null && EF.Functions.ILike(m.MessageType, "%" + query.MessageType + "%"));
        if (!string.IsNullOrWhiteSpace(query.Exchange))
            messages = messages.Where(m => m.Exchange == query.Exchange);
        if (query.From is { } from)
            messages = messages.Where(m => m.StoredAt >= from);
        if (query.To is { } to)
            messages = messages.Where(m => m.StoredAt <= to);
        return await messages.OrderByDescending(m => m.Id).Take(Math.Clamp(query.Take, 1, 1000)).ToListAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How many messages the store holds.</summary>
    public async Task<long> CountAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        return await db.Set<StoredMessage>().LongCountAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes messages stored before <paramref name="before"/>; returns how many.</summary>
    public async Task<int> PruneAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        return await db.Set<StoredMessage>().Where(m => m.StoredAt < before).ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Publishes each message again, with its headers and body, to the queue <paramref name="destination"/> (or, when
    /// null, to the exchange it was first published to). Every publish waits for the broker's confirm and is mandatory: a
    /// message the broker cannot route or refuses fails the replay (reported, never silently dropped).
    /// </summary>
    public async Task<IReadOnlyList<long>> ReplayAsync(IReadOnlyList<StoredMessage> messages, string? destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        await using var connection = await RabbitMqConnections.ConnectAsync(rabbit.Value, "message-store-replay", cancellationToken).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken).ConfigureAwait(false);
        var replayed = new List<long>();
        foreach (var message in messages.OrderBy(m => m.Id))
        {
            var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
            string? messageId = message.MessageId, correlationId = message.CorrelationId, type = null;
            using (var document = JsonDocument.Parse(message.Headers))
            {
                foreach (var header in document.RootElement.EnumerateObject())
                {
                    switch (header.Name)
                    {
                        case "amqp.type": type = header.Value.GetString(); break;
                        case "amqp.messageId" or "amqp.correlationId" or "amqp.contentType": break;
                        default: headers[header.Name] = header.Value.ValueKind == JsonValueKind.String ? header.Value.GetString() : header.Value.GetRawText(); break;
                    }
                }
            }

            headers[ReplayedHeader] = message.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
            headers["Integration-Replayed-At"] = time.GetUtcNow().ToString("O");
            var properties = new BasicProperties
            {
                MessageId = messageId,
                CorrelationId = correlationId,
                ContentType = message.ContentType,
                Type = type,
                Persistent = true,
                Headers = headers,
            };
            if (destination is null)
                await channel.BasicPublishAsync(message.Exchange, "", mandatory: true, properties, message.Body, cancellationToken).ConfigureAwait(false);
            else
                await channel.BasicPublishAsync("", destination, mandatory: true, properties, message.Body, cancellationToken).ConfigureAwait(false);
            replayed.Add(message.Id);
        }

        return replayed;
    }

    /// <summary>The view the control bus returns.</summary>
    public static StoredMessageView View(StoredMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        using var headers = JsonDocument.Parse(message.Headers);
        JsonElement? history = null;
        if (message.History is not null)
        {
            using var document = JsonDocument.Parse(message.History);
            history = document.RootElement.Clone();
        }

        var preview = Encoding.UTF8.GetString(message.Body.AsSpan(0, Math.Min(message.Body.Length, 1024)));
        return new StoredMessageView(message.Id, message.StoredAt, message.Exchange, message.MessageId, message.CorrelationId, message.ConversationId,
            message.InitiatorId, message.MessageType, message.ContentType, headers.RootElement.Clone(), history, preview, message.Body.Length);
    }
}

/// <summary>
/// Consumes the store's queue (bound to the configured exchanges) and writes each message to PostgreSQL; the delivery is
/// acknowledged only after the row is committed, so a crash loses nothing (a redelivery is recognised and skipped).
/// Deletes messages older than the retention once an hour (on the housekeeping leader when one is elected).
/// </summary>
sealed partial class MessageStoreConsumer(IOptions<MessageStoreOptions> options, IOptions<RabbitMqOptions> rabbit, MessageStore store,
    OperationsMetrics metrics, TimeProvider time, ILogger<MessageStoreConsumer> logger, IServiceProvider services) : BackgroundService
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.Enabled)
            return;
        var lastPrune = DateTimeOffset.MinValue;
        for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
        {
            try
            {
                await using var connection = await RabbitMqConnections.ConnectAsync(rabbit.Value, "message-store", stoppingToken).ConfigureAwait(false);
                await using var channel = await connection.CreateChannelAsync(cancellationToken: stoppingToken).ConfigureAwait(false);
                await channel.QueueDeclareAsync(settings.Queue, durable: true, exclusive: false, autoDelete: false, arguments: rabbit.Value.DurableQueueArguments(), cancellationToken: stoppingToken).ConfigureAwait(false);
                foreach (var exchange in settings.Exchanges.Distinct(StringComparer.Ordinal))
                {
                    // Declared as MassTransit declares its exchanges, so whichever side comes first, both agree.
                    await channel.ExchangeDeclareAsync(exchange, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: stoppingToken).ConfigureAwait(false);
                    await channel.QueueBindAsync(settings.Queue, exchange, "", cancellationToken: stoppingToken).ConfigureAwait(false);
                }

                await channel.BasicQosAsync(0, 50, false, stoppingToken).ConfigureAwait(false);
                var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                connection.ConnectionShutdownAsync += (_, _) =>
                {
                    closed.TrySetResult();
                    return Task.CompletedTask;
                };
                var consumer = new AsyncEventingBasicConsumer(channel);
                consumer.ReceivedAsync += async (_, delivery) =>
                {
                    try
                    {
                        if (!(settings.SkipTestMessages && ProbeMonitor.IsTestMessage(delivery.Body.Span)))
                            await store.AddAsync(ToStored(delivery, time.GetUtcNow()), stoppingToken).ConfigureAwait(false);
                        await channel.BasicAckAsync(delivery.DeliveryTag, false, stoppingToken).ConfigureAwait(false);
                        metrics.Stored.Add(1, new KeyValuePair<string, object?>("exchange", delivery.Exchange));
                    }
                    catch (Exception exception) when (exception is not OperationCanceledException)
                    {
                        LogStoreFailed(logger, exception, delivery.Exchange);
                        await channel.BasicNackAsync(delivery.DeliveryTag, false, requeue: true, CancellationToken.None).ConfigureAwait(false);
                        await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken).ConfigureAwait(false);
                    }
                };
                await channel.BasicConsumeAsync(settings.Queue, autoAck: false, consumer, stoppingToken).ConfigureAwait(false);
                LogStarted(logger, settings.Queue, string.Join(", ", settings.Exchanges));
                attempt = 0;

                while (!stoppingToken.IsCancellationRequested && !closed.Task.IsCompleted)
                {
                    // Retention is housekeeping: on the elected leader only when AddIntegrationHousekeeping is registered.
                    if (settings.RetentionHours > 0 && time.GetUtcNow() - lastPrune > TimeSpan.FromHours(1) && services.HousekeepingMayRun("message-store-retention"))
                    {
                        lastPrune = time.GetUtcNow();
                        await store.PruneAsync(lastPrune.AddHours(-settings.RetentionHours), stoppingToken).ConfigureAwait(false);
                    }

                    await Task.WhenAny(closed.Task, Task.Delay(TimeSpan.FromMinutes(1), stoppingToken)).ConfigureAwait(false);
                }
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                LogRetry(logger, attempt, exception.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, attempt * 2)), stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Turns a delivery into a row: properties and headers as JSON, ids and type from the properties or the MassTransit envelope.</summary>
    internal static StoredMessage ToStored(BasicDeliverEventArgs delivery, DateTimeOffset now)
    {
        var properties = delivery.BasicProperties;
        var headers = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (properties.MessageId is not null) headers["amqp.messageId"] = properties.MessageId;
        if (properties.CorrelationId is not null) headers["amqp.correlationId"] = properties.CorrelationId;
        if (properties.ContentType is not null) headers["amqp.contentType"] = properties.ContentType;
        if (properties.Type is not null) headers["amqp.type"] = properties.Type;
        foreach (var (key, value) in properties.Headers ?? new Dictionary<string, object?>())
            headers[key] = Text(value);

        var body = delivery.Body.ToArray();
        string? messageId = properties.MessageId ?? Header(headers, "MessageId");
        string? correlationId = properties.CorrelationId ?? Header(headers, "CorrelationId");
        string? conversationId = Header(headers, "ConversationId") ?? Header(headers, "MT-ConversationId");
        string? initiatorId = Header(headers, "InitiatorId") ?? Header(headers, "MT-InitiatorId");
        string? messageType = Header(headers, "MT-MessageType") ?? Header(headers, "MessageType") ?? properties.Type;
        if (properties.ContentType?.Contains("masstransit", StringComparison.OrdinalIgnoreCase) == true)
        {
            try
            {
                using var envelope = JsonDocument.Parse(body);
                var root = envelope.RootElement;
                messageId ??= Property(root, "messageId");
                correlationId ??= Property(root, "correlationId");
                conversationId ??= Property(root, "conversationId");
                initiatorId ??= Property(root, "initiatorId");
                if (messageType is null && root.TryGetProperty("messageType", out var types) && types.ValueKind == JsonValueKind.Array && types.GetArrayLength() > 0)
                    messageType = types[0].GetString();
            }
            catch (JsonException)
            {
                // Not an envelope after all: keep what the properties say.
            }
        }

        return new StoredMessage
        {
            StoredAt = now,
            Exchange = delivery.Exchange,
            MessageId = Clip(messageId, 100) ?? $"delivery:{Guid.NewGuid():N}",
            CorrelationId = Clip(correlationId, 100),
            ConversationId = Clip(conversationId, 100),
            InitiatorId = Clip(initiatorId, 100),
            MessageType = Clip(messageType ?? (delivery.Exchange.Contains(':', StringComparison.Ordinal) ? delivery.Exchange : null), 500),
            ContentType = Clip(properties.ContentType, 200),
            Headers = JsonSerializer.Serialize(headers, Json),
            History = Header(headers, Integration.Patterns.History.MessageHistory.Header) is { } history && IsJsonArray(history) ? history : null,
            Body = body,
        };
    }

    static string? Header(Dictionary<string, object?> headers, string name) => headers.TryGetValue(name, out var value) ? value?.ToString() : null;

    static string? Property(JsonElement root, string name) => root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    static string? Clip(string? value, int length) => value is { Length: > 0 } ? value.Length > length ? value[..length] : value : null;

    static bool IsJsonArray(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Array;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    static object? Text(object? value) => value switch
    {
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        AmqpTimestamp timestamp => DateTimeOffset.FromUnixTimeSeconds(timestamp.UnixTime).ToString("O"),
        IEnumerable<object> list => list.Select(Text).ToList(),
        IDictionary<string, object?> table => table.ToDictionary(kv => kv.Key, kv => Text(kv.Value)),
        null => null,
        _ => value.ToString(),
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Message store consuming {Queue}, bound to {Exchanges}")]
    static partial void LogStarted(ILogger logger, string queue, string exchanges);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message store not connected yet (attempt {Attempt}): {Reason}")]
    static partial void LogRetry(ILogger logger, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not store a message from {Exchange}; it stays in the queue")]
    static partial void LogStoreFailed(ILogger logger, Exception exception, string exchange);
}
