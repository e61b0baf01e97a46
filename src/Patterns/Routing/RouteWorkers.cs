using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>
/// Background work a step needs besides consuming (an aggregator's timeout poller, a claim store's cleanup): started
/// after the bus has started, so it can send; stopped before the bus stops. Registered while the step is built
/// (<see cref="RouteControl.AddWorker"/>).
/// </summary>
internal interface IRouteWorker
{
    /// <summary>Name for logs, e.g. <c>orders/aggregate:batches timeouts</c>.</summary>
    string Name { get; }

    /// <summary>Runs until <paramref name="stopping"/> is cancelled; must not throw for transient failures.</summary>
    Task RunAsync(IBus bus, CancellationToken stopping);
}

/// <summary>Starts every registered worker when the bus has started and stops them before it stops.</summary>
sealed class RouteWorkerObserver(IReadOnlyList<IRouteWorker> workers) : IBusObserver
{
    readonly object _gate = new();
    CancellationTokenSource? _stopping;
    Task[] _running = [];

    public void PostCreate(IBus bus)
    {
    }

    public void CreateFaulted(Exception exception)
    {
    }

    public Task PreStart(IBus bus) => Task.CompletedTask;

    public Task PostStart(IBus bus, Task<BusReady> busReady)
    {
        lock (_gate)
        {
            if (_stopping is not null)
                return Task.CompletedTask;
            _stopping = new CancellationTokenSource();
            var token = _stopping.Token;
            _running = workers.Select(w => Task.Run(async () =>
            {
                try
                {
                    await busReady.ConfigureAwait(false);
                    await w.RunAsync(bus, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                }
            }, CancellationToken.None)).ToArray();
        }

        return Task.CompletedTask;
    }

    public Task StartFaulted(IBus bus, Exception exception) => StopWorkers();

    public Task PreStop(IBus bus) => StopWorkers();

    public Task PostStop(IBus bus) => Task.CompletedTask;

    public Task StopFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    async Task StopWorkers()
    {
        CancellationTokenSource? stopping;
        Task[] running;
        lock (_gate)
        {
            stopping = _stopping;
            running = _running;
            _stopping = null;
            _running = [];
        }

        if (stopping is null)
            return;
        await stopping.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is TimeoutException or OperationCanceledException)
        {
            // A worker that does not stop in time is abandoned; its work is durable and resumes on the next start.
        }

        stopping.Dispose();
    }
}
