using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit;

namespace Integration.Patterns.SmartProxy;

/// <summary>Settings of a <see cref="SmartProxy"/>.</summary>
public sealed class SmartProxyOptions
{
    /// <summary>Name in metrics and on the control bus; defaults to the destination queue.</summary>
    public string? Name { get; set; }

    /// <summary>How long one attempt waits for its reply (default 5 s).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Further attempts after a timeout or a fault (default 2). Each attempt is a new request with its own request id.</summary>
    public int Retries { get; set; } = 2;

    /// <summary>Pause between attempts (default 200 ms, doubled each time).</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Failed calls in a row (after their retries) that open the circuit (default 3).</summary>
    public int FailureThreshold { get; set; } = 3;

    /// <summary>How long an open circuit refuses calls before it lets one through to test the service (default 30 s).</summary>
    public TimeSpan OpenDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The mistakes in these settings, empty when there is none.</summary>
    public IEnumerable<string> Validate()
    {
        if (Timeout <= TimeSpan.Zero)
            yield return $"SmartProxy '{Name}': Timeout must be positive, not {Timeout}";
        if (Retries < 0)
            yield return $"SmartProxy '{Name}': Retries must be 0 or more, not {Retries}";
        if (RetryDelay < TimeSpan.Zero)
            yield return $"SmartProxy '{Name}': RetryDelay must not be negative";
        if (FailureThreshold < 1)
            yield return $"SmartProxy '{Name}': FailureThreshold must be at least 1, not {FailureThreshold}";
        if (OpenDuration <= TimeSpan.Zero)
            yield return $"SmartProxy '{Name}': OpenDuration must be positive, not {OpenDuration}";
    }
}

/// <summary>State of a <see cref="SmartProxy"/>'s circuit.</summary>
public enum CircuitState
{
    /// <summary>Calls go through.</summary>
    Closed = 0,

    /// <summary>One trial call goes through; its outcome closes or reopens the circuit.</summary>
    HalfOpen = 1,

    /// <summary>Calls fail at once with <see cref="SmartProxyCircuitOpenException"/>.</summary>
    Open = 2,
}

/// <summary>A request the proxy is waiting on.</summary>
/// <param name="RequestId">Id of the current attempt (the reply's correlation).</param>
/// <param name="CallId">Id of the call, the same over its attempts.</param>
/// <param name="MessageType">Request type.</param>
/// <param name="Destination">Where it was sent.</param>
/// <param name="StartedAt">When the call began.</param>
/// <param name="Attempt">1 for the first attempt.</param>
public sealed record PendingRequest(Guid RequestId, Guid CallId, string MessageType, string Destination, DateTimeOffset StartedAt, int Attempt);

/// <summary>The circuit is open: the service failed <see cref="SmartProxyOptions.FailureThreshold"/> calls in a row.</summary>
public sealed class SmartProxyCircuitOpenException(string proxy, DateTimeOffset until)
    : Exception($"Smart proxy '{proxy}': the circuit is open until {until:O}; the call was not sent")
{
    /// <summary>When a trial call will be let through.</summary>
    public DateTimeOffset Until { get; } = until;
}

/// <summary>
/// Smart proxy (EIP): request/reply through the bus to one service queue, with the reply correlated to its request (by
/// request id, through MassTransit's request client), a timeout per attempt, retries, a circuit breaker, and a list of
/// the requests it is waiting on. Thread-safe; create one per service and keep it (it registers itself for the
/// <c>integration.smart_proxy.*</c> metrics and <see cref="All"/> until disposed).
/// </summary>
public sealed class SmartProxy : IDisposable
{
    static readonly Meter Meter = new("Integration.Patterns.SmartProxy");
    static readonly ConcurrentDictionary<SmartProxy, byte> Live = new();
    static readonly Counter<long> Calls = Meter.CreateCounter<long>("integration.smart_proxy.calls", "{call}", "Calls by proxy and outcome (ok, fault, timeout, rejected)");
    static readonly Histogram<double> Duration = Meter.CreateHistogram<double>("integration.smart_proxy.duration", "ms", "Call duration, retries included");

    readonly IBus _bus;
    readonly Uri _destination;
    readonly SmartProxyOptions _options;
    readonly TimeProvider _time;
    readonly ConcurrentDictionary<Guid, PendingRequest> _pending = new();
    readonly Lock _gate = new();
    int _failures;
    DateTimeOffset _openUntil;
    bool _trialRunning;

    static SmartProxy()
    {
        Meter.CreateObservableGauge("integration.smart_proxy.pending", () => Live.Keys.Select(p =>
            new Measurement<int>(p._pending.Count, new KeyValuePair<string, object?>("proxy", p.Name))), "{request}", "Requests waiting for their reply");
        Meter.CreateObservableGauge("integration.circuit_breaker.state", () => Live.Keys.Select(p =>
            new Measurement<int>((int)p.State, new KeyValuePair<string, object?>("proxy", p.Name))), null, "Circuit state: 0 closed, 1 half-open, 2 open");
    }

    /// <summary>A proxy to the service consuming <paramref name="destination"/> (e.g. <c>queue:stock-levels</c>).</summary>
    public SmartProxy(IBus bus, Uri destination, SmartProxyOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(options);
        var failures = options.Validate().ToList();
        if (failures.Count > 0)
            throw new ArgumentException(string.Join("; ", failures), nameof(options));
        _bus = bus;
        _destination = destination;
        _options = options;
        _time = time ?? TimeProvider.System;
        Name = string.IsNullOrWhiteSpace(options.Name) ? destination.AbsolutePath.Trim('/').Split('/')[^1] : options.Name;
        Live.TryAdd(this, 0);
    }

    /// <summary>Every live proxy, for the control bus and the dashboard.</summary>
    public static IReadOnlyList<SmartProxy> All => Live.Keys.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();

    /// <summary>Name in metrics and listings.</summary>
    public string Name { get; }

    /// <summary>The destination address.</summary>
    public Uri Destination => _destination;

    /// <summary>Requests waiting for their reply, oldest first.</summary>
    public IReadOnlyList<PendingRequest> Pending => _pending.Values.OrderBy(p => p.StartedAt).ToList();

    /// <summary>The circuit's state now.</summary>
    public CircuitState State
    {
        get
        {
            lock (_gate)
            {
                if (_failures < _options.FailureThreshold)
                    return CircuitState.Closed;
                return _time.GetUtcNow() >= _openUntil ? CircuitState.HalfOpen : CircuitState.Open;
            }
        }
    }

    /// <summary>
    /// Sends <paramref name="request"/> and returns its reply. Retries timeouts and faults; throws
    /// <see cref="SmartProxyCircuitOpenException"/> without sending while the circuit is open, else the last attempt's
    /// <see cref="RequestTimeoutException"/> or <see cref="RequestFaultException"/>.
    /// </summary>
    public async Task<TResponse> RequestAsync<TRequest, TResponse>(TRequest request, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(request);
        var started = Stopwatch.GetTimestamp();
        Admit();
        var callId = NewId.NextGuid();
        var client = _bus.CreateRequestClient<TRequest>(_destination, RequestTimeout.After(ms: (int)_options.Timeout.TotalMilliseconds));
        try
        {
            for (var attempt = 1; ; attempt++)
            {
                using (var handle = client.Create(request, cancellationToken))
                {
                    var requestId = handle.RequestId;
                    _pending[requestId] = new PendingRequest(requestId, callId, typeof(TRequest).Name, _destination.ToString(), _time.GetUtcNow(), attempt);
                    try
                    {
                        var response = await handle.GetResponse<TResponse>().ConfigureAwait(false);
                        Succeeded(started);
                        return response.Message;
                    }
                    catch (Exception exception) when (exception is RequestTimeoutException or RequestFaultException && attempt <= _options.Retries)
                    {
                        // Retried below, as a new request.
                    }
                    catch (Exception exception) when (exception is RequestTimeoutException or RequestFaultException)
                    {
                        Failed(started, exception is RequestTimeoutException ? "timeout" : "fault");
                        throw;
                    }
                    finally
                    {
                        _pending.TryRemove(requestId, out _);
                    }
                }

                await Task.Delay(_options.RetryDelay * Math.Pow(2, attempt - 1), _time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception exception) when (exception is not (RequestTimeoutException or RequestFaultException))
        {
            // Cancelled by the caller (or a bug of ours): not the service's failure, so it does not count, but a trial call ends.
            ReleaseTrial();
            throw;
        }
    }

    void Admit()
    {
        lock (_gate)
        {
            if (_failures < _options.FailureThreshold)
                return;
            if (_time.GetUtcNow() < _openUntil || _trialRunning)
            {
                Calls.Add(1, new KeyValuePair<string, object?>("proxy", Name), new KeyValuePair<string, object?>("outcome", "rejected"));
                throw new SmartProxyCircuitOpenException(Name, _openUntil);
            }

            _trialRunning = true;
        }
    }

    void Succeeded(long started)
    {
        lock (_gate)
        {
            _failures = 0;
            _trialRunning = false;
        }

        Record(started, "ok");
    }

    void Failed(long started, string outcome)
    {
        lock (_gate)
        {
            _failures++;
            _trialRunning = false;
            if (_failures >= _options.FailureThreshold)
                _openUntil = _time.GetUtcNow() + _options.OpenDuration;
        }

        Record(started, outcome);
    }

    void ReleaseTrial()
    {
        lock (_gate)
            _trialRunning = false;
    }

    void Record(long started, string outcome)
    {
        var proxy = new KeyValuePair<string, object?>("proxy", Name);
        Calls.Add(1, proxy, new KeyValuePair<string, object?>("outcome", outcome));
        Duration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, proxy);
    }

    /// <summary>Closes the circuit by hand (the control bus's reset).</summary>
    public void Reset()
    {
        lock (_gate)
        {
            _failures = 0;
            _trialRunning = false;
        }
    }

    /// <inheritdoc />
    public void Dispose() => Live.TryRemove(this, out _);
}
