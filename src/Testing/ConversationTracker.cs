using System.Collections.Concurrent;
using System.Text.Json;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Testing;

/// <summary>
/// Records every message published in a virtual host, across endpoints and hosts, so a spec can await a whole
/// conversation (every message sharing a MassTransit <c>ConversationId</c>) — "everything this caused is done".
/// </summary>
/// <remarks>
/// Binds one private queue to every exchange of the virtual host (listed with the management API at start and again
/// while waiting, since MassTransit declares exchanges lazily, on first send). Each message is recorded once per
/// publish, with the exchange it was published to. A message published to an exchange before the tracker bound it is
/// not seen: start the tracker, and call <see cref="RefreshAsync"/> once the hosts are up, before the first message.
/// </remarks>
public sealed class ConversationTracker : IAsyncDisposable
{
    readonly ConcurrentDictionary<string, bool> _bound = new(StringComparer.Ordinal);
    readonly List<BrokerMessage> _messages = [];
    readonly SemaphoreSlim _lock = new(1, 1);
    readonly TestBroker _broker;
    readonly IConnection _connection;
    readonly IChannel _channel;
    string _queue = "";

    ConversationTracker(TestBroker broker, IConnection connection, IChannel channel)
    {
        _broker = broker;
        _connection = connection;
        _channel = channel;
    }

    /// <summary>Starts tracking <paramref name="broker"/>'s virtual host (e.g. <c>host.Broker</c>).</summary>
    public static async Task<ConversationTracker> StartAsync(TestBroker broker, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(broker);
        var connection = await new ConnectionFactory { Uri = broker.AmqpUri }.CreateConnectionAsync("conversation-tracker", cancellationToken).ConfigureAwait(false);
        ConversationTracker? tracker = null;
        try
        {
            var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            tracker = new ConversationTracker(broker, connection, channel);
            tracker._queue = (await channel.QueueDeclareAsync($"conversation-tracker.{Guid.NewGuid():N}", durable: false, exclusive: true, autoDelete: true,
                cancellationToken: cancellationToken).ConfigureAwait(false)).QueueName;
            var consumer = new AsyncEventingBasicConsumer(channel);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                var message = new BrokerMessage(delivery.Exchange, delivery.Exchange, delivery.RoutingKey, delivery.Body.ToArray(), delivery.BasicProperties);
                lock (tracker._messages)
                    tracker._messages.Add(message);
                return Task.CompletedTask;
            };
            await channel.BasicConsumeAsync(tracker._queue, autoAck: true, consumer, cancellationToken).ConfigureAwait(false);
            await tracker.RefreshAsync(cancellationToken).ConfigureAwait(false);
            return tracker;
        }
        catch
        {
            if (tracker is not null)
                await tracker.DisposeAsync().ConfigureAwait(false);
            else
                await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The exchanges bound so far.</summary>
    public IReadOnlyCollection<string> Exchanges => _bound.Keys.Order(StringComparer.Ordinal).ToList();

    /// <summary>Every message recorded so far, in arrival order.</summary>
    public IReadOnlyList<BrokerMessage> Messages
    {
        get
        {
            lock (_messages)
                return _messages.ToList();
        }
    }

    /// <summary>The messages of one conversation recorded so far.</summary>
    public IReadOnlyList<BrokerMessage> Conversation(Guid conversationId) =>
        Messages.Where(m => Guid.TryParse(m.ConversationId, out var id) && id == conversationId).ToList();

    /// <summary>Binds the exchanges declared since the last look (the management API lists them).</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var response = await _broker.Infrastructure.ManagementRequest(HttpMethod.Get,
                $"api/exchanges/{Uri.EscapeDataString(_broker.VirtualHost)}?columns=name,type").ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
            foreach (var exchange in document.RootElement.EnumerateArray())
            {
                var name = exchange.GetProperty("name").GetString() ?? "";
                var type = exchange.TryGetProperty("type", out var t) ? t.GetString() : null;
                if (name.Length == 0 || name.StartsWith("amq.", StringComparison.Ordinal) || _bound.ContainsKey(name))
                    continue;
                // Fanout ignores the key; "#" matches every key on a topic exchange; a direct exchange only its key (none).
                await _channel.QueueBindAsync(_queue, name, type == "topic" ? "#" : "", cancellationToken: cancellationToken).ConfigureAwait(false);
                _bound[name] = true;
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Waits until the conversation's messages satisfy <paramref name="done"/> (e.g. one of them is <c>OrderFulfilled</c>); returns them.</summary>
    public Task<IReadOnlyList<BrokerMessage>> WaitForAsync(Guid conversationId, Func<IReadOnlyList<BrokerMessage>, bool> done, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(done);
        return Observe.UntilAsync($"Conversation {conversationId}", async token =>
        {
            await RefreshAsync(token).ConfigureAwait(false);
            return Conversation(conversationId);
        }, done, () => Describe(conversationId), timeout, cancellationToken);
    }

    /// <summary>Waits until the conversation has <paramref name="count"/> messages; returns them.</summary>
    public Task<IReadOnlyList<BrokerMessage>> WaitForAsync(Guid conversationId, int count, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        WaitForAsync(conversationId, m => m.Count >= count, timeout, cancellationToken);

    /// <summary>Waits until a message of <typeparamref name="T"/> is in the conversation; returns the conversation so far.</summary>
    public Task<IReadOnlyList<BrokerMessage>> WaitForAsync<T>(Guid conversationId, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        WaitForAsync(conversationId, m => m.Any(x => x.Is<T>()), timeout, cancellationToken);

    /// <summary>The conversation id of the first message recorded that matches <paramref name="predicate"/> (e.g. the order's <c>OrderSubmitted</c>).</summary>
    public async Task<Guid> FindConversationAsync(Func<BrokerMessage, bool> predicate, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        var first = await Observe.UntilAsync("A message starting the conversation", async token =>
        {
            await RefreshAsync(token).ConfigureAwait(false);
            return Messages.FirstOrDefault(m => m.ConversationId is not null && predicate(m));
        }, m => m is not null, () => Describe(null), timeout, cancellationToken).ConfigureAwait(false);
        return Guid.Parse(first!.ConversationId!);
    }

    string Describe(Guid? conversationId)
    {
        var all = Messages;
        var conversation = conversationId is { } id ? Conversation(id) : [];
        return (conversationId is null ? "" : $"{conversation.Count} message(s) in the conversation: {string.Join(" | ", conversation)}; ") +
               $"{all.Count} message(s) in all: {string.Join(" | ", all)}; exchanges bound: {string.Join(", ", Exchanges)}";
    }

    /// <summary>Closes the connection; the private queue goes with it.</summary>
    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        _lock.Dispose();
    }
}
