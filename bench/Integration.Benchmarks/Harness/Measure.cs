using System.Diagnostics;

namespace Integration.Benchmarks.Harness;

/// <summary>Latency samples in microseconds; percentiles by nearest rank.</summary>
public sealed class LatencyRecorder(int capacity)
{
    readonly long[] _samples = new long[capacity];
    int _count;

    public int Count => Volatile.Read(ref _count);

    public void Record(TimeSpan elapsed)
    {
        var index = Interlocked.Increment(ref _count) - 1;
        if (index < _samples.Length)
            _samples[index] = (long)(elapsed.Ticks / 10.0);
    }

    public double PercentileMs(double percentile)
    {
        var n = Math.Min(Count, _samples.Length);
        if (n == 0)
            return double.NaN;
        var sorted = _samples[..n];
        Array.Sort(sorted);
        var rank = (int)Math.Ceiling(percentile / 100.0 * n) - 1;
        return sorted[Math.Clamp(rank, 0, n - 1)] / 1000.0;
    }
}

/// <summary>Counts consumed messages and completes when the expected number arrived.</summary>
public sealed class Countdown(int expected)
{
    readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    int _count;

    public int Count => Volatile.Read(ref _count);

    public void Signal()
    {
        if (Interlocked.Increment(ref _count) == expected)
            _done.TrySetResult();
    }

    /// <summary>Waits for all messages; fails the scenario (never reports a partial figure) after the timeout.</summary>
    public async Task WaitAsync(TimeSpan timeout, string what)
    {
        if (await Task.WhenAny(_done.Task, Task.Delay(timeout)).ConfigureAwait(false) != _done.Task)
            throw new TimeoutException($"{what}: only {Count} of {expected} messages arrived within {timeout.TotalSeconds:0} s");
    }
}

/// <summary>Runs <paramref name="count"/> operations with at most <paramref name="concurrency"/> in flight.</summary>
public static class Pump
{
    public static async Task RunAsync(int count, int concurrency, Func<int, Task> operation)
    {
        ArgumentNullException.ThrowIfNull(operation);
        var next = -1;
        var workers = Enumerable.Range(0, Math.Min(concurrency, count)).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
                await operation(i).ConfigureAwait(false);
        });
        await Task.WhenAll(workers).ConfigureAwait(false);
    }

    public static Stopwatch Start() => Stopwatch.StartNew();
}
