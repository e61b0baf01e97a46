using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.Support;

/// <summary>
/// Posts orders to the hosts' <c>POST /api/orders</c> at a steady pace from a few concurrent clients, as a well-behaved client would: each order has
/// its id chosen by the client (the idempotency key) and is retried with the same id until a host accepts it, so a
/// request that failed or timed out mid-way can never create a second order. An order counts as sent once accepted (202).
/// </summary>
public sealed class OrderTraffic(Func<IReadOnlyList<HttpClient>> hosts, TimeSpan interval)
{
    /// <summary>Every fifth order fails at the purchase order step, so compensation runs under faults too.</summary>
    public const int FailingEvery = 5;

    readonly ConcurrentDictionary<Guid, bool> _accepted = new();
    int _attempts;
    int _failedAttempts;

    /// <summary>Orders a host accepted (202), with whether the order was meant to fail (compensation).</summary>
    public IReadOnlyDictionary<Guid, bool> Accepted => _accepted;

    /// <summary>HTTP attempts, including the failed ones that were retried.</summary>
    public int Attempts => _attempts;

    /// <summary>Attempts that failed (connection refused, 5xx, timeouts) and were retried with the same order id.</summary>
    public int FailedAttempts => _failedAttempts;

    /// <summary>Why the last failed attempt failed.</summary>
    public string? LastFailure { get; private set; }

    /// <summary>Sends until <paramref name="stop"/> is cancelled; the order in flight at that moment is still retried until <paramref name="giveUp"/>.</summary>
    public Task RunAsync(CancellationToken stop, CancellationToken giveUp, int lanes = 3) =>
        Task.WhenAll(Enumerable.Range(0, lanes).Select(_ => Task.Run(() => LaneAsync(stop, giveUp), CancellationToken.None)));

    int _next;

    async Task LaneAsync(CancellationToken stop, CancellationToken giveUp)
    {
        while (!stop.IsCancellationRequested)
        {
            var orderId = Guid.NewGuid();
            var next = Interlocked.Increment(ref _next);
            var failing = next % FailingEvery == 0;
            var body = new
            {
                orderId,
                deviceId = $"truck-{next % 17}",
                region = "north",
                lines = new[] { new { sku = failing ? "FAIL-PO-7" : $"PUMP-{next % 5}", quantity = 1 + next % 9 } },
            };
            while (!giveUp.IsCancellationRequested)
            {
                var targets = hosts();
                var client = targets[(next + _attempts) % targets.Count];
                Interlocked.Increment(ref _attempts);
                try
                {
                    using var response = await client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), body, giveUp).ConfigureAwait(false);
                    if (response.StatusCode == HttpStatusCode.Accepted)
                    {
                        _accepted[orderId] = failing;
                        break;
                    }

                    LastFailure = $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(giveUp).ConfigureAwait(false)}";
                }
                catch (Exception exception) when (exception is HttpRequestException or OperationCanceledException)
                {
                    // Refused, reset or timed out: the same order id is posted again.
                    LastFailure = exception.Message;
                }

                Interlocked.Increment(ref _failedAttempts);
                await Delay(TimeSpan.FromMilliseconds(200), giveUp).ConfigureAwait(false);
            }

            await Delay(interval, stop).ConfigureAwait(false);
        }
    }

    static async Task Delay(TimeSpan delay, CancellationToken token)
    {
        try
        {
            await Task.Delay(delay, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>
/// A device publishing raw JSON parts requests to queue <c>parts-requests</c> over its own AMQP connection (straight to the
/// broker: the faults are injected between the host and its services, not between devices and the broker), with publisher
/// confirms: a request counts as sent only when the broker confirmed it.
/// </summary>
public sealed class PartsTraffic(Uri broker, TimeSpan interval)
{
    static readonly string[] Categories = ["electronics", "hydraulics", "brakes"];

    readonly ConcurrentDictionary<string, string> _confirmed = new();

    /// <summary>Confirmed requests: request id → the queue it must reach.</summary>
    public IReadOnlyDictionary<string, string> Confirmed => _confirmed;

    /// <summary>Publishes until <paramref name="stop"/> is cancelled.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        var factory = new ConnectionFactory { Uri = broker, AutomaticRecoveryEnabled = true };
        await using var connection = await factory.CreateConnectionAsync("reliability-device", CancellationToken.None).ConfigureAwait(false);
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true), CancellationToken.None).ConfigureAwait(false);
        var next = 0;
        var sequences = new Dictionary<string, int>();
        while (!stop.IsCancellationRequested)
        {
            next++;
            var requestId = $"req-{next:D6}-{Guid.NewGuid():N}"[..24];
            var testDevice = next % 10 == 0;
            var category = Categories[next % Categories.Length];
            var destination = testDevice ? "parts-requests-discarded" : category switch
            {
                "electronics" => "parts-electronics",
                "hydraulics" => "parts-hydraulics",
                _ => "parts-general",
            };
            var deviceId = testDevice ? "test-bench-1" : $"truck-{next % 13}";
            // Each device numbers its requests: the sink counts a request that arrives after a later one of the same device.
            var sequence = sequences[deviceId] = sequences.GetValueOrDefault(deviceId) + 1;
            var body = JsonSerializer.SerializeToUtf8Bytes(new
            {
                requestId,
                deviceId,
                sequence,
                category,
                sku = $"SKU-{next % 50}",
                quantity = 1 + next % 4,
            });
            var properties = new BasicProperties { ContentType = "application/json", Persistent = true, MessageId = Guid.NewGuid().ToString() };
            try
            {
                // Returns when the broker confirmed the publish (publisher confirms with tracking).
                await channel.BasicPublishAsync("", "parts-requests", mandatory: true, properties, body, CancellationToken.None).ConfigureAwait(false);
                _confirmed[requestId] = destination;
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                // Not confirmed: not counted as sent (a real device would publish it again under the same request id).
            }

            try
            {
                await Task.Delay(interval, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}

/// <summary>
/// Reads every queue the parts routes deliver to (the stand-ins for downstream systems, and <c>audit</c>) and records what
/// arrived: request id → the queues it reached, with one entry per copy.
/// </summary>
public sealed class PartsSink : IAsyncDisposable
{
    /// <summary>The route's outputs a request can end in, plus the wire tap.</summary>
    public static readonly string[] Queues = ["parts-electronics", "parts-hydraulics", "parts-general", "parts-requests-discarded", "audit"];

    readonly ConcurrentDictionary<string, ConcurrentQueue<string>> _arrivals = new();
    readonly Dictionary<(string Device, string Queue), (int Highest, HashSet<int> Seen)> _sequences = [];
    readonly IConnection _connection;
    int _orderViolations;
    int _sequenced;
    readonly IChannel _channel;

    PartsSink(IConnection connection, IChannel channel)
    {
        _connection = connection;
        _channel = channel;
    }

    /// <summary>Request id → queues it arrived in (a queue twice when a copy arrived twice).</summary>
    public IReadOnlyDictionary<string, ConcurrentQueue<string>> Arrivals => _arrivals;

    /// <summary>Requests that reached a destination queue (not <c>audit</c>) after a later request of the same device (copies of one request not counted).</summary>
    public int OrderViolations => Volatile.Read(ref _orderViolations);

    /// <summary>Arrivals in a destination queue that carried a device sequence number (0: the order was not checked).</summary>
    public int SequencedArrivals => Volatile.Read(ref _sequenced);

    void RecordSequence(string queue, string? device, int? sequence)
    {
        if (queue == "audit" || device is null || sequence is not { } n)
            return;
        lock (_sequences)
        {
            _sequenced++;
            var (highest, seen) = _sequences.TryGetValue((device, queue), out var known) ? known : (0, new HashSet<int>());
            if (!seen.Add(n))
                return; // a copy of a request already seen here (at-least-once), not an order violation
            if (n < highest)
                _orderViolations++;
            _sequences[(device, queue)] = (Math.Max(highest, n), seen);
        }
    }

    /// <summary>Declares the destination queues (as the host does: durable) and consumes them.</summary>
    public static async Task<PartsSink> StartAsync(Uri broker, IDictionary<string, object?>? queueArguments = null)
    {
        var factory = new ConnectionFactory { Uri = broker, AutomaticRecoveryEnabled = true };
        var connection = await factory.CreateConnectionAsync("reliability-downstream").ConfigureAwait(false);
        var channel = await connection.CreateChannelAsync().ConfigureAwait(false);
        var sink = new PartsSink(connection, channel);
        foreach (var queue in Queues)
        {
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: queueArguments).ConfigureAwait(false);
            var consumer = new RabbitMQ.Client.Events.AsyncEventingBasicConsumer(channel);
            var name = queue;
            consumer.ReceivedAsync += (_, delivery) =>
            {
                var (requestId, device, sequence) = Read(delivery.Body.Span);
                sink._arrivals.GetOrAdd(requestId ?? "(unreadable)", _ => new ConcurrentQueue<string>()).Enqueue(name);
                sink.RecordSequence(name, device, sequence);
                return Task.CompletedTask;
            };
            await channel.BasicConsumeAsync(queue, autoAck: true, consumer).ConfigureAwait(false);
        }

        return sink;
    }

    static (string? RequestId, string? Device, int? Sequence) Read(ReadOnlySpan<byte> body)
    {
        try
        {
            using var json = JsonDocument.Parse(Encoding.UTF8.GetString(body));
            var root = json.RootElement;
            return (root.TryGetProperty("requestId", out var id) ? id.GetString() : null,
                root.TryGetProperty("deviceId", out var device) && device.ValueKind == JsonValueKind.String ? device.GetString() : null,
                root.TryGetProperty("sequence", out var sequence) && sequence.TryGetInt32(out var n) ? n : null);
        }
        catch (JsonException)
        {
            return (null, null, null);
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _channel.DisposeAsync().ConfigureAwait(false);
        await _connection.DisposeAsync().ConfigureAwait(false);
    }
}
