using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Text;
using Integration.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Integration.Operations;

/// <summary>Test messages (EIP "Test Message"), bound from <c>Integration:Probes</c>.</summary>
public sealed class ProbeOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Probes";

    /// <summary>Off: no probe is sent and the <c>probes</c> health check reports Healthy ("off").</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Seconds between two probes of a route.</summary>
    [Range(1, 86400)] public int IntervalSeconds { get; set; } = 30;

    /// <summary>Seconds a probe may take before it counts as lost.</summary>
    [Range(1, 3600)] public int TimeoutSeconds { get; set; } = 10;

    /// <summary>Consecutive failed probes after which the route is Unhealthy (one failure makes it Degraded).</summary>
    [Range(1, 100)] public int UnhealthyAfter { get; set; } = 2;

    /// <summary>The routes to probe.</summary>
    public List<ProbeRoute> Routes { get; set; } = [];

    internal static IEnumerable<string> Validate(ProbeOptions options)
    {
        foreach (var (route, i) in options.Routes.Select((r, i) => (r, i)))
        {
            if (string.IsNullOrWhiteSpace(route.Queue) || string.IsNullOrWhiteSpace(route.ExpectOn) || !route.Body.Contains("{probeId}", StringComparison.Ordinal))
                yield return $"{Section}:Routes:{i}: a probe needs Queue, ExpectOn and a Body containing {{probeId}}";
        }
    }
}

/// <summary>One probed route: a body sent to <see cref="Queue"/> that must come out on <see cref="ExpectOn"/>.</summary>
public sealed class ProbeRoute
{
    /// <summary>Name shown in health and metrics; defaults to the queue.</summary>
    public string? Name { get; set; }

    /// <summary>Queue the probe enters (the route's input).</summary>
    [Required] public string Queue { get; set; } = "";

    /// <summary>Exchange the probe must reach (the queue a route sends it to); a private queue of the prober is bound to it.</summary>
    [Required] public string ExpectOn { get; set; } = "";

    /// <summary>Body (JSON) with <c>{probeId}</c> where the probe's id goes; the probe is recognised by that id.</summary>
    [Required] public string Body { get; set; } = "";

    /// <summary>Content type of the body.</summary>
    public string ContentType { get; set; } = "application/json";

    internal string DisplayName => string.IsNullOrWhiteSpace(Name) ? Queue : Name;
}

/// <summary>The last result of a probed route.</summary>
/// <param name="Route">Probe name.</param>
/// <param name="Ok">Whether the last probe came through in time.</param>
/// <param name="LatencyMs">Its round trip, when it did.</param>
/// <param name="At">When the result was known.</param>
/// <param name="ConsecutiveFailures">Failures in a row.</param>
/// <param name="Error">Why the last probe failed.</param>
record ProbeResult(string Route, bool Ok, double? LatencyMs, DateTimeOffset At, int ConsecutiveFailures, string? Error);

/// <summary>
/// Sends a test message through each configured route on a schedule and waits for it where the route delivers it; the
/// outcome feeds the <c>probes</c> readiness check and the <c>integration.probe.*</c> metrics. Probes are sent with
/// publisher confirms (mandatory), recognised by a unique id in the body, and received on a private auto-delete queue
/// bound to the destination's exchange, so the real consumers of the destination still get the test message (routes
/// are expected to discard test devices — the parts route sends them to <c>parts-requests-discarded</c>).
/// </summary>
sealed partial class ProbeMonitor(IOptions<ProbeOptions> options, IOptions<RabbitMqOptions> rabbit, ReceiveEndpointRegistry endpoints, OperationsMetrics metrics,
    TimeProvider time, ILogger<ProbeMonitor> logger) : BackgroundService, IHealthCheck
{
    readonly ConcurrentDictionary<string, ProbeResult> _results = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, (string Route, long Started, TaskCompletionSource<double> Done)> _pending = new(StringComparer.Ordinal);

    /// <summary>Prefix of every probe id; a body containing one is a test message.</summary>
    public const string IdPrefix = "probe-";

    /// <summary>True when <paramref name="body"/> carries a probe id (<c>probe-</c> and 32 hex digits).</summary>
    public static bool IsTestMessage(ReadOnlySpan<byte> body)
    {
        var prefix = "probe-"u8;
        for (var at = body.IndexOf(prefix); at >= 0; at = body.IndexOf(prefix) is var next and >= 0 ? next : -1)
        {
            var rest = body[(at + prefix.Length)..];
            if (rest.Length >= 32 && System.Text.Ascii.IsValid(rest[..32]) && rest[..32].IndexOfAnyExcept("0123456789abcdef"u8) < 0)
                return true;
            body = rest;
        }

        return false;
    }

    /// <summary>The last result of every probed route.</summary>
    public IReadOnlyList<ProbeResult> Results => _results.Values.OrderBy(r => r.Route, StringComparer.Ordinal).ToList();

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var settings = options.Value;
        if (!settings.Enabled || settings.Routes.Count == 0)
            return Task.FromResult(HealthCheckResult.Healthy("test messages are off"));
        var results = Results;
        var data = results.ToDictionary(r => r.Route, r => (object)(r.Ok ? $"ok in {r.LatencyMs:0} ms" : $"{r.ConsecutiveFailures} failed: {r.Error}"));
        var failing = results.Where(r => !r.Ok).ToList();
        if (failing.Count == 0)
            return Task.FromResult(HealthCheckResult.Healthy(results.Count == 0 ? "no test message sent yet" : "every probed route delivered its test message", data));
        var description = string.Join("; ", failing.Select(r => $"{r.Route}: {r.Error}"));
        return Task.FromResult(failing.Any(r => r.ConsecutiveFailures >= settings.UnhealthyAfter)
            ? HealthCheckResult.Unhealthy(description, data: data)
            : HealthCheckResult.Degraded(description, data: data));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.Enabled || settings.Routes.Count == 0)
            return;
        var interval = TimeSpan.FromSeconds(settings.IntervalSeconds);
        for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
        {
            try
            {
                await using var connection = await RabbitMqConnections.ConnectAsync(rabbit.Value, "probes", stoppingToken).ConfigureAwait(false);
                await using var listen = await connection.CreateChannelAsync(cancellationToken: stoppingToken).ConfigureAwait(false);
                await using var send = await connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true), stoppingToken).ConfigureAwait(false);
                var queue = rabbit.Value.QueueType == RabbitMqQueueType.Quorum
                    // A quorum queue cannot be exclusive or auto-delete: a named one that expires when this instance stops using it.
                    ? (await listen.QueueDeclareAsync($"probes-{Guid.NewGuid():N}", durable: true, exclusive: false, autoDelete: false,
                        arguments: rabbit.Value.InstanceQueueArguments(), cancellationToken: stoppingToken).ConfigureAwait(false)).QueueName
                    : (await listen.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true, cancellationToken: stoppingToken).ConfigureAwait(false)).QueueName;
                foreach (var exchange in settings.Routes.Select(r => r.ExpectOn).Distinct(StringComparer.Ordinal))
                {
                    await listen.ExchangeDeclareAsync(exchange, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: stoppingToken).ConfigureAwait(false);
                    await listen.QueueBindAsync(queue, exchange, "", cancellationToken: stoppingToken).ConfigureAwait(false);
                }

                var consumer = new AsyncEventingBasicConsumer(listen);
                consumer.ReceivedAsync += (_, delivery) =>
                {
                    var body = Encoding.UTF8.GetString(delivery.Body.Span);
                    foreach (var (id, pending) in _pending)
                    {
                        if (body.Contains(id, StringComparison.Ordinal))
                            pending.Done.TrySetResult(Stopwatch.GetElapsedTime(pending.Started).TotalMilliseconds);
                    }

                    return Task.CompletedTask;
                };
                await listen.BasicConsumeAsync(queue, autoAck: true, consumer, stoppingToken).ConfigureAwait(false);

                while (!stoppingToken.IsCancellationRequested && connection.IsOpen)
                {
                    var round = settings.Routes.Where(r => endpoints.Find(r.Queue) is not null).Select(r => ProbeAsync(send, r, settings, stoppingToken));
                    await Task.WhenAll(round.Append(Task.Delay(interval, stoppingToken))).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception exception)
            {
                LogRetry(logger, attempt, exception.Message);
                foreach (var route in settings.Routes)
                    Record(route.DisplayName, null, $"prober not connected: {exception.Message}");
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, attempt * 2)), stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    async Task ProbeAsync(IChannel channel, ProbeRoute route, ProbeOptions settings, CancellationToken cancellationToken)
    {
        var id = $"{IdPrefix}{Guid.NewGuid():N}";
        var done = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = (route.DisplayName, Stopwatch.GetTimestamp(), done);
        try
        {
            var properties = new BasicProperties
            {
                MessageId = id,
                ContentType = route.ContentType,
                Persistent = false,
                Expiration = (settings.TimeoutSeconds * 1000).ToString(System.Globalization.CultureInfo.InvariantCulture),
                Headers = new Dictionary<string, object?> { ["Integration-Probe"] = "true" },
            };
            await channel.BasicPublishAsync("", route.Queue, mandatory: true, properties, Encoding.UTF8.GetBytes(route.Body.Replace("{probeId}", id, StringComparison.Ordinal)),
                cancellationToken).ConfigureAwait(false);
            var latency = await done.Task.WaitAsync(TimeSpan.FromSeconds(settings.TimeoutSeconds), cancellationToken).ConfigureAwait(false);
            Record(route.DisplayName, latency, null);
        }
        catch (TimeoutException)
        {
            Record(route.DisplayName, null, $"no test message on '{route.ExpectOn}' within {settings.TimeoutSeconds} s");
        }
        catch (RabbitMQ.Client.Exceptions.PublishException exception)
        {
            Record(route.DisplayName, null, exception.IsReturn ? $"'{route.Queue}' does not exist (the broker returned the test message)" : "the broker refused the test message");
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    void Record(string route, double? latency, string? error)
    {
        var ok = error is null;
        var failures = ok ? 0 : (_results.TryGetValue(route, out var last) ? last.ConsecutiveFailures : 0) + 1;
        _results[route] = new ProbeResult(route, ok, latency, time.GetUtcNow(), failures, error);
        metrics.ProbeUp[route] = ok ? 1 : 0;
        metrics.Probes.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("outcome", ok ? "ok" : "failed"));
        if (latency is { } ms)
            metrics.ProbeLatency.Record(ms, new KeyValuePair<string, object?>("route", route));
        else
            LogProbeFailed(logger, route, error ?? "");
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Test message through {Route} failed: {Reason}")]
    static partial void LogProbeFailed(ILogger logger, string route, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Prober not connected yet (attempt {Attempt}): {Reason}")]
    static partial void LogRetry(ILogger logger, int attempt, string reason);
}
