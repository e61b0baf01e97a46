using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using MassTransit;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Testing;

/// <summary>
/// Drives a route on a real broker as its outside producers and consumers would: publishes typed (MassTransit envelope)
/// or raw bodies in any content type, and observes every destination queue, with its <c>_error</c> and <c>_skipped</c>
/// queues, without taking the messages from them. Works on a <see cref="TestBroker"/> of a spec's own or on the broker
/// of a running <see cref="IntegrationTestHost{TProgram}"/> (<c>host.Broker</c>).
/// </summary>
/// <remarks>
/// <see cref="WatchAsync"/> declares each watched queue's exchange (fanout, durable, as MassTransit declares it) and binds
/// a private queue to it before anything is published, so no message sent to the queue through MassTransit is missed and
/// the queue's own consumers still get theirs. A timeout throws <see cref="AwaitTimeoutException"/> listing what every
/// watched queue received.
/// </remarks>
public sealed class RouteHarness : IAsyncDisposable
{
    readonly ConcurrentDictionary<string, Watched> _watched = new(StringComparer.Ordinal);
    readonly SemaphoreSlim _lock = new(1, 1);
    readonly IConnection _connection;
    readonly IChannel _channel;

    RouteHarness(TestBroker broker, IConnection connection, IChannel channel)
    {
        Broker = broker;
        _connection = connection;
        _channel = channel;
    }

    /// <summary>The virtual host the harness publishes to and watches.</summary>
    public TestBroker Broker { get; }

    /// <summary>Connects to <paramref name="broker"/>'s virtual host.</summary>
    public static async Task<RouteHarness> StartAsync(TestBroker broker, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(broker);
        var connection = await new ConnectionFactory { Uri = broker.AmqpUri }.CreateConnectionAsync("route-harness", cancellationToken).ConfigureAwait(false);
        try
        {
            var channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            return new RouteHarness(broker, connection, channel);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Watches each queue and its <c>&lt;queue&gt;_error</c> and <c>&lt;queue&gt;_skipped</c> queues from now on: every
    /// message MassTransit sends to them is recorded (the queues keep theirs). Call it before publishing.
    /// </summary>
    public async Task WatchAsync(params string[] queues)
    {
        ArgumentNullException.ThrowIfNull(queues);
        foreach (var queue in queues)
        {
            await WatchOneAsync(queue).ConfigureAwait(false);
            if (!queue.EndsWith("_error", StringComparison.Ordinal) && !queue.EndsWith("_skipped", StringComparison.Ordinal))
            {
                await WatchOneAsync(queue + "_error").ConfigureAwait(false);
                await WatchOneAsync(queue + "_skipped").ConfigureAwait(false);
            }
        }
    }

    async Task WatchOneAsync(string queue)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_watched.ContainsKey(queue))
                return;
            await _channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false).ConfigureAwait(false);
            var copy = await _channel.QueueDeclareAsync($"route-harness.{queue}.{Guid.NewGuid():N}", durable: false, exclusive: true, autoDelete: true)
                .ConfigureAwait(false);
            await _channel.QueueBindAsync(copy.QueueName, queue, "").ConfigureAwait(false);
            var watched = new Watched(queue);
            var consumer = new AsyncEventingBasicConsumer(_channel);
            consumer.ReceivedAsync += (_, delivery) =>
            {
                watched.Add(new BrokerMessage(queue, delivery.Exchange, delivery.RoutingKey, delivery.Body.ToArray(), delivery.BasicProperties));
                return Task.CompletedTask;
            };
            await _channel.BasicConsumeAsync(copy.QueueName, autoAck: true, consumer).ConfigureAwait(false);
            _watched[queue] = watched;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>Publishes a raw body (no MassTransit envelope) straight to a queue, as a producer outside .NET would.</summary>
    /// <param name="queue">
    /// The queue, published to through the default exchange: it must exist already (the broker drops a message for a
    /// queue not declared yet), so start the bus with <c>MassTransitHostOptions.WaitUntilStarted</c>.
    /// </param>
    /// <param name="body">The body as sent.</param>
    /// <param name="contentType">The AMQP content type, e.g. <c>application/json</c>, <c>application/xml</c>, <c>text/csv</c>; null for none.</param>
    /// <param name="headers">AMQP headers.</param>
    /// <param name="messageId">The AMQP message id; a new one when null.</param>
    public async Task PublishRawAsync(string queue, ReadOnlyMemory<byte> body, string? contentType = null,
        IReadOnlyDictionary<string, object?>? headers = null, string? messageId = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        var properties = new BasicProperties
        {
            ContentType = contentType,
            MessageId = messageId ?? Guid.NewGuid().ToString(),
            DeliveryMode = DeliveryModes.Persistent,
            Headers = headers?.ToDictionary(h => h.Key, h => h.Value),
        };
        await PublishAsync("", queue, properties, body).ConfigureAwait(false);
    }

    /// <summary>Publishes a text body (UTF-8) straight to a queue, as a producer outside .NET would.</summary>
    public Task PublishRawAsync(string queue, string body, string? contentType = null, IReadOnlyDictionary<string, object?>? headers = null,
        string? messageId = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        return PublishRawAsync(queue, Encoding.UTF8.GetBytes(body), contentType, headers, messageId);
    }

    /// <summary>Publishes a body with AMQP properties of the caller's own (priority, expiration, ...) straight to a queue.</summary>
    public Task PublishRawAsync(string queue, BasicProperties properties, ReadOnlyMemory<byte> body)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        ArgumentNullException.ThrowIfNull(properties);
        return PublishAsync("", queue, properties, body);
    }

    /// <summary>
    /// Sends <paramref name="message"/> to a queue in a MassTransit JSON envelope (<c>application/vnd.masstransit+json</c>),
    /// as a MassTransit producer would; returns the envelope's message id (also its conversation id). Like
    /// <see cref="PublishRawAsync(string, ReadOnlyMemory{byte}, string?, IReadOnlyDictionary{string, object?}?, string?)"/>,
    /// straight to a queue that exists already.
    /// </summary>
    public async Task<Guid> PublishAsync<T>(string queue, T message, Guid? correlationId = null)
        where T : class
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        ArgumentNullException.ThrowIfNull(message);
        var messageId = NewId.NextGuid();
        var envelope = new Dictionary<string, object?>
        {
            ["messageId"] = messageId,
            ["conversationId"] = messageId,
            ["correlationId"] = correlationId,
            ["destinationAddress"] = $"rabbitmq://{Broker.Host}/{Uri.EscapeDataString(Broker.VirtualHost)}/{queue}",
            ["messageType"] = new[] { MessageUrn.ForTypeString<T>() },
            ["message"] = message,
            ["sentTime"] = DateTime.UtcNow,
            ["headers"] = new Dictionary<string, object>(),
        };
        var body = JsonSerializer.SerializeToUtf8Bytes(envelope, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        var properties = new BasicProperties
        {
            ContentType = "application/vnd.masstransit+json",
            MessageId = messageId.ToString(),
            DeliveryMode = DeliveryModes.Persistent,
        };
        await PublishAsync("", queue, properties, body).ConfigureAwait(false);
        return messageId;
    }

    /// <summary>
    /// Publishes with publisher confirms and <c>mandatory</c>: a message the broker cannot route (no such queue yet) or
    /// refuses fails the publish with the reason instead of vanishing.
    /// </summary>
    async Task PublishAsync(string exchange, string routingKey, BasicProperties properties, ReadOnlyMemory<byte> body)
    {
        await using var channel = await _connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true)).ConfigureAwait(false);
        try
        {
            await channel.BasicPublishAsync(exchange, routingKey, mandatory: true, properties, body).ConfigureAwait(false);
        }
        catch (RabbitMQ.Client.Exceptions.PublishException exception) when (exception.IsReturn)
        {
            throw new InvalidOperationException(
                $"The broker could not route the message to '{(exchange.Length == 0 ? routingKey : exchange)}' on virtual host '{Broker.VirtualHost}': " +
                "no queue is bound there yet (start the host first, or WatchAsync the queue)", exception);
        }
    }

    /// <summary>What a watched queue received so far (in arrival order).</summary>
    public IReadOnlyList<BrokerMessage> Received(string queue) => Watch(queue).All();

    /// <summary>The next message a watched queue receives (each call returns the next one, in arrival order).</summary>
    public Task<BrokerMessage> NextAsync(string queue, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var watched = Watch(queue);
        return Observe.UntilAsync($"The next message at {queue}", _ => Task.FromResult(watched.TryTake()), m => m is not null, Describe, timeout,
            cancellationToken)!;
    }

    /// <summary>The first message a watched queue received (or receives) that matches <paramref name="predicate"/>.</summary>
    public Task<BrokerMessage> WaitForAsync(string queue, Func<BrokerMessage, bool> predicate, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        var watched = Watch(queue);
        return Observe.UntilAsync($"A matching message at {queue}", _ => Task.FromResult(watched.All().FirstOrDefault(predicate)), m => m is not null,
            Describe, timeout, cancellationToken)!;
    }

    /// <summary>Waits until a watched queue received <paramref name="count"/> messages; returns all it received.</summary>
    public Task<IReadOnlyList<BrokerMessage>> WaitForCountAsync(string queue, int count, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var watched = Watch(queue);
        return Observe.UntilAsync($"{count} message(s) at {queue}", _ => Task.FromResult(watched.All()), m => m.Count >= count, Describe, timeout,
            cancellationToken);
    }

    /// <summary>The next message faulted into <c>&lt;queue&gt;_error</c> (<see cref="BrokerMessage.Reason"/>, <see cref="BrokerMessage.FaultMessage"/>, <see cref="BrokerMessage.FaultExceptionType"/>).</summary>
    public Task<BrokerMessage> NextErrorAsync(string queue, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        NextAsync(queue + "_error", timeout, cancellationToken);

    /// <summary>The next message moved to <c>&lt;queue&gt;_skipped</c> (no consumer took its message type; <see cref="BrokerMessage.Reason"/> is <c>dead-letter</c>).</summary>
    public Task<BrokerMessage> NextSkippedAsync(string queue, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        NextAsync(queue + "_skipped", timeout, cancellationToken);

    /// <summary>
    /// Takes the next message from the queue itself, as a consumer would (it leaves the queue), including ones that arrived
    /// before anything watched it; waits while the queue is empty or not declared yet.
    /// </summary>
    public async Task<BrokerMessage> TakeAsync(string queue, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        return (await Observe.UntilAsync($"A message to take from {queue}", async token =>
        {
            // A channel per attempt: reading a queue not declared yet closes the channel.
            await using var channel = await _connection.CreateChannelAsync(cancellationToken: token).ConfigureAwait(false);
            var result = await channel.BasicGetAsync(queue, true, token).ConfigureAwait(false);
            return result is null ? null : new BrokerMessage(queue, result.Exchange, result.RoutingKey, result.Body.ToArray(), result.BasicProperties);
        }, m => m is not null, () => $"{queue} stayed empty or undeclared; {Describe()}", timeout, cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Takes one message from the queue itself if one is ready now; null when it is empty or not declared.</summary>
    public async Task<BrokerMessage?> TryTakeAsync(string queue, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(queue);
        await using var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            var result = await channel.BasicGetAsync(queue, true, cancellationToken).ConfigureAwait(false);
            return result is null ? null : new BrokerMessage(queue, result.Exchange, result.RoutingKey, result.Body.ToArray(), result.BasicProperties);
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
            return null;
        }
    }

    Watched Watch(string queue) =>
        _watched.TryGetValue(queue, out var watched)
            ? watched
            : throw new InvalidOperationException($"{queue} is not watched; call WatchAsync(\"{queue}\") before publishing.");

    string Describe() => _watched.IsEmpty
        ? "no queue watched"
        : string.Join("; ", _watched.Values.OrderBy(w => w.Queue, StringComparer.Ordinal).Select(w =>
        {
            var all = w.All();
            return all.Count == 0 ? $"{w.Queue}: nothing" : $"{w.Queue}: {all.Count} message(s): " + string.Join(" | ", all);
        }));

    /// <summary>Closes the connection; the private watching queues go with it.</summary>
    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
        _lock.Dispose();
    }

    sealed class Watched(string queue)
    {
        readonly List<BrokerMessage> _messages = [];
        int _next;

        public string Queue { get; } = queue;

        public void Add(BrokerMessage message)
        {
            lock (_messages)
                _messages.Add(message);
        }

        public IReadOnlyList<BrokerMessage> All()
        {
            lock (_messages)
                return _messages.ToList();
        }

        public BrokerMessage? TryTake()
        {
            lock (_messages)
                return _next < _messages.Count ? _messages[_next++] : null;
        }
    }
}
