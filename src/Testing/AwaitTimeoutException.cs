namespace Integration.Testing;

/// <summary>
/// An await of the testing kit did not see what it waited for in time. The message says what was awaited, for how long,
/// and everything that was observed meanwhile (messages, states, queues, rows), so a failed spec explains itself.
/// </summary>
public sealed class AwaitTimeoutException : TimeoutException
{
    /// <summary>A timeout with what was awaited and what was observed.</summary>
    public AwaitTimeoutException(string awaited, TimeSpan timeout, string observed, Exception? lastError = null)
        : base($"{awaited} did not happen within {timeout}. Observed: {observed}" +
               (lastError is null ? "" : $" (last error while observing: {lastError.GetType().Name}: {lastError.Message})"), lastError)
    {
        Awaited = awaited;
        Observed = observed;
    }

    /// <summary>What was awaited.</summary>
    public string Awaited { get; }

    /// <summary>What was observed until the time was up.</summary>
    public string Observed { get; }
}

/// <summary>Polls an observation until it shows the awaited fact; never sleeps for a fixed time.</summary>
static class Observe
{
    internal static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);
    static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(50);

    internal static async Task<T> UntilAsync<T>(string awaited, Func<CancellationToken, Task<T>> observe, Func<T, bool> done, Func<string> describe,
        TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var limit = timeout ?? DefaultTimeout;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Exception? lastError = null;
        while (true)
        {
            try
            {
                var observed = await observe(cancellationToken).ConfigureAwait(false);
                lastError = null;
                if (done(observed))
                    return observed;
            }
            catch (Exception exception) when (!cancellationToken.IsCancellationRequested && exception is not AwaitTimeoutException)
            {
                lastError = exception;
            }

            if (watch.Elapsed >= limit)
                throw new AwaitTimeoutException(awaited, limit, describe(), lastError);
            await Task.Delay(Interval, cancellationToken).ConfigureAwait(false);
        }
    }
}
