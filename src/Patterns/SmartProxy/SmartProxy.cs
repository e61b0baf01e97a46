using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

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
/// Every smart proxy of a service provider, by name: a DI singleton (<see cref="SmartProxyRegistration.AddIntegrationSmartProxies"/>)
/// that creates the proxies, lists them for the control bus and the dashboard, and owns their
/// <c>Integration.Patterns.SmartProxy</c> meter (from the host's <see cref="IMeterFactory"/>; a container without one gets
/// a meter owned by the registry): <c>integration.smart_proxy.calls</c>, <c>integration.smart_proxy.duration</c>,
/// <c>integration.smart_proxy.pending</c> and <c>integration.circuit_breaker.state</c>.
/// </summary>
public sealed class SmartProxyRegistry : IDisposable
{
    /// <summary>Name of the smart proxies' meter.</summary>
    public const string MeterName = "Integration.Patterns.SmartProxy";

    readonly IBus _bus;
    readonly Meter _meter;
    readonly bool _ownsMeter;
    readonly ConcurrentDictionary<string, SmartProxy> _proxies = new(StringComparer.Ordinal);

    /// <summary>A registry creating proxies on <paramref name="bus"/>; resolved from DI, where <paramref name="meterFactory"/> is the host's.</summary>
    public SmartProxyRegistry(IBus bus, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(bus);
        _bus = bus;
        _ownsMeter = meterFactory is null;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        Calls = _meter.CreateCounter<long>("integration.smart_proxy.calls", "{call}", "Calls by proxy and outcome (ok, fault, timeout, rejected)");
        Duration = _meter.CreateHistogram<double>("integration.smart_proxy.duration", "ms", "Call duration, retries included");
        _meter.CreateObservableGauge("integration.smart_proxy.pending", () => _proxies.Values.Select(p =>
            new Measurement<int>(p.PendingCount, new KeyValuePair<string, object?>("proxy", p.Name))), "{request}", "Requests waiting for their reply");
        _meter.CreateObservableGauge("integration.circuit_breaker.state", () => _proxies.Values.Select(p =>
            new Measurement<int>((int)p.State, new KeyValuePair<string, object?>("proxy", p.Name))), null, "Circuit state: 0 closed, 1 half-open, 2 open");
    }

    internal Counter<long> Calls { get; }

    internal Histogram<double> Duration { get; }

    /// <summary>Every live proxy, by name.</summary>
    public IReadOnlyList<SmartProxy> All => _proxies.Values.OrderBy(p => p.Name, StringComparer.Ordinal).ToList();

    /// <summary>The proxy named <paramref name="name"/>, or null.</summary>
    public SmartProxy? Find(string name) => _proxies.TryGetValue(name ?? "", out var proxy) ? proxy : null;

    /// <summary>
    /// Creates a proxy to the service consuming <paramref name="destination"/> (e.g. <c>queue:stock-levels</c>) and lists it
    /// under its name (<see cref="SmartProxyOptions.Name"/>, default: the queue) until it is disposed. Create one per
    /// service and keep it; <paramref name="time"/> is the circuit breaker's clock (default: the system's).
    /// </summary>
    /// <exception cref="ArgumentException">The options are invalid (each mistake named), or a live proxy has that name.</exception>
    public SmartProxy Create(Uri destination, SmartProxyOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(options);
        var failures = options.Validate().ToList();
        if (failures.Count > 0)
            throw new ArgumentException(string.Join("; ", failures), nameof(options));
        var name = string.IsNullOrWhiteSpace(options.Name) ? destination.AbsolutePath.Trim('/').Split('/')[^1] : options.Name;
        var proxy = new SmartProxy(this, _bus, name, destination, options, time ?? TimeProvider.System);
        if (!_proxies.TryAdd(name, proxy))
            throw new ArgumentException($"SmartProxy '{name}': a live smart proxy already has this name; give each one its own Name", nameof(options));
        return proxy;
    }

    internal void Remove(SmartProxy proxy) => ((ICollection<KeyValuePair<string, SmartProxy>>)_proxies).Remove(new KeyValuePair<string, SmartProxy>(proxy.Name, proxy));

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsMeter)
            _meter.Dispose();
    }
}

/// <summary>Registers the <see cref="SmartProxyRegistry"/>.</summary>
public static class SmartProxyRegistration
{
    /// <summary>Registers <see cref="SmartProxyRegistry"/> as a singleton (once); create proxies with <see cref="SmartProxyRegistry.Create"/>.</summary>
    public static IServiceCollection AddIntegrationSmartProxies(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(sp => new SmartProxyRegistry(sp.GetRequiredService<IBus>(), sp.GetService<IMeterFactory>()));
        return services;
    }
}

/// <summary>
/// Smart proxy (EIP): request/reply through the bus to one service queue, with the reply correlated to its request (by
/// request id, through MassTransit's request client), a timeout per attempt, retries, a circuit breaker, and a list of
/// the requests it is waiting on. Thread-safe; created by <see cref="SmartProxyRegistry.Create"/>, listed there until disposed.
/// </summary>
public sealed class SmartProxy : IDisposable
{
    readonly SmartProxyRegistry _registry;
    readonly IBus _bus;
    readonly Uri _destination;
    readonly SmartProxyOptions _options;
    readonly TimeProvider _time;
    readonly ConcurrentDictionary<Guid, PendingRequest> _pending = new();
    readonly Lock _gate = new();
    int _failures;
    DateTimeOffset _openUntil;
    bool _trialRunning;

    internal SmartProxy(SmartProxyRegistry registry, IBus bus, string name, Uri destination, SmartProxyOptions options, TimeProvider time)
    {
        _registry = registry;
        _bus = bus;
        _destination = destination;
        _options = options;
        _time = time;
        Name = name;
    }

    /// <summary>Name in metrics and listings.</summary>
    public string Name { get; }

    /// <summary>The destination address.</summary>
    public Uri Destination => _destination;

    /// <summary>Requests waiting for their reply, oldest first.</summary>
    public IReadOnlyList<PendingRequest> Pending => _pending.Values.OrderBy(p => p.StartedAt).ToList();

    internal int PendingCount => _pending.Count;

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
    public Task<TResponse> RequestAsync<TRequest, TResponse>(TRequest request, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class =>
        RequestAsync<TRequest, TResponse>(request, null, cancellationToken);

    /// <summary>
    /// As <see cref="RequestAsync{TRequest, TResponse}(TRequest, CancellationToken)"/>, under <paramref name="deadline"/>
    /// (<see cref="Deadlines.MessageDeadline.Of"/> of the message being handled): each attempt waits what is left, capped by
    /// <see cref="SmartProxyOptions.Timeout"/>, and carries that deadline on; once it has passed, no attempt is made and
    /// <see cref="Deadlines.DeadlineExceededException"/> is thrown (not counted as the service's failure).
    /// </summary>
    public async Task<TResponse> RequestAsync<TRequest, TResponse>(TRequest request, Deadlines.MessageDeadline? deadline, CancellationToken cancellationToken = default)
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
                var timeout = Deadlines.MessageDeadline.HopTimeout(deadline, _options.Timeout, _time);
                var hop = deadline?.Hop(timeout, _time);
                using (var handle = client.Create(request, cancellationToken, RequestTimeout.After(ms: Deadlines.DeadlineExtensions.Milliseconds(timeout))))
                {
                    if (hop is not null)
                        handle.UseExecute(send => hop.WriteTo(send));
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
                _registry.Calls.Add(1, new KeyValuePair<string, object?>("proxy", Name), new KeyValuePair<string, object?>("outcome", "rejected"));
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
        _registry.Calls.Add(1, proxy, new KeyValuePair<string, object?>("outcome", outcome));
        _registry.Duration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, proxy);
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

    /// <summary>Removes the proxy from its registry (and from the metrics).</summary>
    public void Dispose() => _registry.Remove(this);
}
