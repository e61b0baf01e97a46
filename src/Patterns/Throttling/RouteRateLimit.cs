using System.Diagnostics;
using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.Throttling;

/// <summary>
/// Throttler (EIP) of one route: at most <see cref="Messages"/> messages per <see cref="Interval"/>, spaced evenly.
/// Changed at run time by the control bus (<see cref="RouteControl.SetRateLimit"/>); the new rate applies to the next
/// message. Messages over the rate wait (unacknowledged, in order of arrival) — none is dropped.
/// </summary>
public sealed class RouteRateLimit
{
    readonly object _lock = new();
    long _nextSlot;
    int _messages;
    TimeSpan _interval;

    internal RouteRateLimit(string route, int messages, TimeSpan interval)
    {
        Route = route;
        _messages = messages;
        _interval = interval;
    }

    /// <summary>The route it throttles.</summary>
    public string Route { get; }

    /// <summary>Messages allowed per <see cref="Interval"/>.</summary>
    public int Messages
    {
        get { lock (_lock) return _messages; }
    }

    /// <summary>The interval the rate is counted over.</summary>
    public TimeSpan Interval
    {
        get { lock (_lock) return _interval; }
    }

    /// <summary>Messages a second at the current setting.</summary>
    public double PerSecond
    {
        get { lock (_lock) return _messages / _interval.TotalSeconds; }
    }

    /// <summary>Checks a setting; empty when it is valid.</summary>
    public static IEnumerable<string> Validate(int messages, TimeSpan interval)
    {
        if (messages < 1)
            yield return $"the rate limit needs at least 1 message per interval, not {messages}";
        if (interval <= TimeSpan.Zero || interval > TimeSpan.FromHours(1))
            yield return $"the rate limit interval must be positive and at most 1 hour, not {interval}";
    }

    internal void Set(int messages, TimeSpan interval)
    {
        lock (_lock)
        {
            _messages = messages;
            _interval = interval;
            // A lower rate must not leave slots booked at the old one far ahead; a higher one applies at once.
            _nextSlot = Math.Min(_nextSlot, Stopwatch.GetTimestamp() + Spacing());
        }
    }

    /// <summary>Books the next slot; returns how long the caller must wait for it.</summary>
    internal TimeSpan Reserve()
    {
        lock (_lock)
        {
            var now = Stopwatch.GetTimestamp();
            var slot = Math.Max(now, _nextSlot);
            _nextSlot = slot + Spacing();
            return Stopwatch.GetElapsedTime(now, slot);
        }
    }

    long Spacing() => (long)(_interval.TotalSeconds / _messages * Stopwatch.Frequency);
}

/// <summary>Holds each message until its slot under the route's rate limit.</summary>
sealed class RateLimitFilter(RouteRateLimit limit) : IFilter<ConsumeContext>
{
    public async Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
    {
        var wait = limit.Reserve();
        if (wait > TimeSpan.Zero)
            await Task.Delay(wait, context.CancellationToken).ConfigureAwait(false);
        await next.Send(context).ConfigureAwait(false);
    }

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("rateLimit");
        scope.Add("messages", limit.Messages);
        scope.Add("interval", limit.Interval);
    }
}
