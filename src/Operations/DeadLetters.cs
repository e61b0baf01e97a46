using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Hosting;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Integration.Operations;

/// <summary>A message in an error queue, as an operator needs to see it.</summary>
sealed record DeadLetter(string? MessageId, string? MessageType, string? Reason, string? ExceptionType, string? FaultedAt, string? ConsumerType,
    int BodyBytes, string BodyPreview);

/// <summary>An error queue and how many messages wait in it.</summary>
sealed record DeadLetterQueue(string Queue, string OriginalQueue, long Messages);

/// <summary>
/// The <c>*_error</c> queues of the host's virtual host: list them and their messages, replay messages to the queue they
/// failed on, delete them. Replay never loses a message: each one is republished with publisher confirms and only then
/// acknowledged in the error queue; a crash in between leaves it in both places (at-least-once, and the consumers'
/// inbox makes the duplicate harmless), never in neither.
/// </summary>
sealed class DeadLetterService(IOptions<RabbitMqOptions> options, IHttpClientFactory http)
{
    /// <summary>Name of the HTTP client for the RabbitMQ management API.</summary>
    public const string ManagementClient = "rabbitmq-management";

    /// <summary>Suffix MassTransit gives error queues.</summary>
    public const string ErrorSuffix = "_error";

    RabbitMqOptions Settings => options.Value;

    HttpClient Management()
    {
        var client = http.CreateClient(ManagementClient);
        client.BaseAddress = Settings.EffectiveManagementUri;
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Settings.Username}:{Settings.Password}")));
        return client;
    }

    string VHost => Uri.EscapeDataString(Settings.VirtualHost);

    /// <summary>Every error queue of the virtual host with its depth.</summary>
    public async Task<IReadOnlyList<DeadLetterQueue>> ListQueuesAsync(CancellationToken cancellationToken)
    {
        using var client = Management();
        var queues = await client.GetFromJsonAsync<JsonElement>($"api/queues/{VHost}?columns=name,messages", cancellationToken).ConfigureAwait(false);
        return queues.EnumerateArray()
            .Select(q => (Name: q.GetProperty("name").GetString() ?? "", Messages: q.TryGetProperty("messages", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetInt64() : 0))
            .Where(q => q.Name.EndsWith(ErrorSuffix, StringComparison.Ordinal))
            .Select(q => new DeadLetterQueue(q.Name, q.Name[..^ErrorSuffix.Length], q.Messages))
            .OrderBy(q => q.Queue, StringComparer.Ordinal)
            .ToList();
    }

    /// <summary>Up to <paramref name="take"/> messages of an error queue with their fault headers. Peeking leaves them in the queue.</summary>
    public async Task<IReadOnlyList<DeadLetter>?> PeekAsync(string queue, int take, CancellationToken cancellationToken)
    {
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        if (!await ExistsAsync(connection, queue, cancellationToken).ConfigureAwait(false))
            return null;

        // Hold every fetched message unacknowledged, then reject them all back: the queue keeps them, in their order.
        await channel.BasicQosAsync(0, 0, false, cancellationToken).ConfigureAwait(false);
        var letters = new List<DeadLetter>();
        for (var i = 0; i < Math.Clamp(take, 1, 500); i++)
        {
            var message = await channel.BasicGetAsync(queue, autoAck: false, cancellationToken).ConfigureAwait(false);
            if (message is null)
                break;
            letters.Add(Describe(message));
        }

        await channel.CloseAsync(cancellationToken).ConfigureAwait(false);
        return letters;
    }

    /// <summary>
    /// Moves messages from <paramref name="errorQueue"/> back to the queue they failed on — all of them, or only the one
    /// with <paramref name="messageId"/>. Returns how many were replayed, or null when the error queue does not exist.
    /// </summary>
    public async Task<int?> ReplayAsync(string errorQueue, string? messageId, CancellationToken cancellationToken)
    {
        if (!errorQueue.EndsWith(ErrorSuffix, StringComparison.Ordinal))
            throw new ArgumentException($"'{errorQueue}' is not an error queue (its name must end in {ErrorSuffix})", nameof(errorQueue));
        var original = errorQueue[..^ErrorSuffix.Length];
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        if (!await ExistsAsync(connection, errorQueue, cancellationToken).ConfigureAwait(false))
            return null;

        await using var channel = await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), cancellationToken).ConfigureAwait(false);
        var skipped = new List<ulong>();
        var replayed = 0;
        var depth = (await channel.QueueDeclarePassiveAsync(errorQueue, cancellationToken).ConfigureAwait(false)).MessageCount;
        for (var i = 0; i < depth; i++)
        {
            var message = await channel.BasicGetAsync(errorQueue, autoAck: false, cancellationToken).ConfigureAwait(false);
            if (message is null)
                break;
            if (messageId is not null && message.BasicProperties.MessageId != messageId)
            {
                skipped.Add(message.DeliveryTag);
                continue;
            }

            var properties = new BasicProperties(message.BasicProperties)
            {
                Headers = new Dictionary<string, object?>(message.BasicProperties.Headers ?? new Dictionary<string, object?>())
                {
                    ["Integration-Replayed-From"] = errorQueue,
                    ["Integration-Replayed-At"] = DateTimeOffset.UtcNow.ToString("O"),
                },
            };

            // Completes when the broker confirmed; only then is the dead letter acknowledged.
            await channel.BasicPublishAsync("", original, mandatory: true, properties, message.Body, cancellationToken).ConfigureAwait(false);
            await channel.BasicAckAsync(message.DeliveryTag, multiple: false, cancellationToken).ConfigureAwait(false);
            replayed++;
            if (messageId is not null)
                break;
        }

        foreach (var tag in skipped)
            await channel.BasicNackAsync(tag, multiple: false, requeue: true, cancellationToken).ConfigureAwait(false);
        return replayed;
    }

    /// <summary>Deletes every message of an error queue, or only the one with <paramref name="messageId"/>. Null when the queue does not exist.</summary>
    public async Task<long?> DeleteAsync(string errorQueue, string? messageId, CancellationToken cancellationToken)
    {
        if (!errorQueue.EndsWith(ErrorSuffix, StringComparison.Ordinal))
            throw new ArgumentException($"'{errorQueue}' is not an error queue (its name must end in {ErrorSuffix})", nameof(errorQueue));
        await using var connection = await ConnectAsync(cancellationToken).ConfigureAwait(false);
        if (!await ExistsAsync(connection, errorQueue, cancellationToken).ConfigureAwait(false))
            return null;
        await using var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        if (messageId is null)
            return await channel.QueuePurgeAsync(errorQueue, cancellationToken).ConfigureAwait(false);

        var depth = (await channel.QueueDeclarePassiveAsync(errorQueue, cancellationToken).ConfigureAwait(false)).MessageCount;
        var others = new List<ulong>();
        long deleted = 0;
        for (var i = 0; i < depth; i++)
        {
            var message = await channel.BasicGetAsync(errorQueue, autoAck: false, cancellationToken).ConfigureAwait(false);
            if (message is null)
                break;
            if (message.BasicProperties.MessageId == messageId)
            {
                await channel.BasicAckAsync(message.DeliveryTag, false, cancellationToken).ConfigureAwait(false);
                deleted = 1;
                break;
            }

            others.Add(message.DeliveryTag);
        }

        foreach (var tag in others)
            await channel.BasicNackAsync(tag, false, requeue: true, cancellationToken).ConfigureAwait(false);
        return deleted;
    }

    static DeadLetter Describe(BasicGetResult message)
    {
        var headers = message.BasicProperties.Headers;
        string? Header(string name) => headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), null => null, _ => value.ToString() }
            : null;
        var body = message.Body.Span;
        var preview = Encoding.UTF8.GetString(body[..Math.Min(body.Length, 512)]);
        return new DeadLetter(message.BasicProperties.MessageId, Header("MT-Fault-MessageType") ?? message.BasicProperties.Type, Header("MT-Fault-Message"),
            Header("MT-Fault-ExceptionType"), Header("MT-Fault-Timestamp"), Header("MT-Fault-ConsumerType"), body.Length, preview);
    }

    async Task<IConnection> ConnectAsync(CancellationToken cancellationToken) =>
        await RabbitMqConnections.ConnectAsync(Settings, "dead-letters", cancellationToken).ConfigureAwait(false);

    static async Task<bool> ExistsAsync(IConnection connection, string queue, CancellationToken cancellationToken)
    {
        // A passive declare of a missing queue closes its channel: use a throwaway one.
        await using var probe = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await probe.QueueDeclarePassiveAsync(queue, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return false;
        }
    }
}
