using System.Collections.Concurrent;
using MassTransit;

namespace Integration.Operations;

/// <summary>Every receive endpoint of the bus, by queue name, so the control bus can pause and resume them.</summary>
sealed class ReceiveEndpointRegistry : IReceiveEndpointObserver
{
    readonly ConcurrentDictionary<string, Entry> _endpoints = new(StringComparer.Ordinal);

    /// <summary>A receive endpoint and whether an operator paused it.</summary>
    public sealed record Entry(string Name, Uri InputAddress, IReceiveEndpoint Endpoint, bool Paused);

    /// <summary>Known endpoints.</summary>
    public IReadOnlyCollection<Entry> All => _endpoints.Values.OrderBy(e => e.Name, StringComparer.Ordinal).ToList();

    /// <summary>The endpoint consuming queue <paramref name="name"/>, if any.</summary>
    public Entry? Find(string name) => _endpoints.TryGetValue(name, out var entry) ? entry : null;

    /// <summary>Stops consuming: unacknowledged messages return to the queue, new ones wait there.</summary>
    public async Task<bool> PauseAsync(string name, CancellationToken cancellationToken)
    {
        if (Find(name) is not { } entry)
            return false;
        _endpoints[name] = entry with { Paused = true };
        await entry.Endpoint.Stop(cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Starts consuming again and waits until the endpoint is ready.</summary>
    public async Task<bool> ResumeAsync(string name, CancellationToken cancellationToken)
    {
        if (Find(name) is not { } entry)
            return false;
        var handle = entry.Endpoint.Start(cancellationToken);
        await handle.Ready.WaitAsync(cancellationToken).ConfigureAwait(false);
        _endpoints[name] = entry with { Paused = false };
        return true;
    }

    static string NameOf(Uri address) => address.AbsolutePath.TrimEnd('/').Split('/')[^1];

    Task IReceiveEndpointObserver.Ready(ReceiveEndpointReady ready)
    {
        var name = NameOf(ready.InputAddress);
        _endpoints.AddOrUpdate(name,
            _ => new Entry(name, ready.InputAddress, ready.ReceiveEndpoint, Paused: false),
            (_, existing) => existing with { Endpoint = ready.ReceiveEndpoint });
        return Task.CompletedTask;
    }

    Task IReceiveEndpointObserver.Stopping(ReceiveEndpointStopping stopping) => Task.CompletedTask;

    Task IReceiveEndpointObserver.Completed(ReceiveEndpointCompleted completed) => Task.CompletedTask;

    Task IReceiveEndpointObserver.Faulted(ReceiveEndpointFaulted faulted) => Task.CompletedTask;
}
