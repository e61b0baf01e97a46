using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Sagas.Postgres;

/// <summary>
/// <see cref="PostgresSagaRepositoryOptions.BatchReads"/>: the optimistic repository's instance reads, coalesced. While one
/// <c>SELECT ... WHERE correlation_id = ANY(@ids)</c> is in flight, the reads of every other event wait for the next one,
/// which takes them all: under load a prefetch's worth of events costs one read instead of one each; alone an event is
/// read at once. The values are attached to the event's DbContext with their row version, exactly as if the event had
/// read them itself outside its transaction: the <c>UPDATE ... WHERE xmin = read</c> is the guard, a row changed since
/// fails it and the event is processed again from a fresh read. One read in flight per saga type and container.
/// </summary>
sealed class SagaReadBatcher<TSaga>(IServiceScopeFactory scopes, Type dbContextType)
    where TSaga : class, ISaga
{
    /// <summary>The most instances one read asks for (the rest wait for the next one).</summary>
    const int MaxBatch = 500;

    readonly Lock _lock = new();
    List<(Guid Id, TaskCompletionSource<object?[]?> Result)> _pending = [];
    bool _running;
    IProperty[]? _properties;
    bool? _supported;

    /// <summary>The mapped properties of a saga mapped to plain columns, or null (then the event reads the instance itself).</summary>
    public IProperty[]? Properties(DbContext db)
    {
        if (_supported is { } known)
            return known ? _properties : null;
        _properties = SagaInstanceCache<TSaga>.PlainColumns(db);
        _supported = _properties is not null;
        return _properties;
    }

    /// <summary>The instance's column values (row version included) as one of the next coalesced reads sees them; null when there is no row.</summary>
    public Task<object?[]?> LoadAsync(Guid correlationId, CancellationToken cancellationToken)
    {
        var result = new TaskCompletionSource<object?[]?>(TaskCreationOptions.RunContinuationsAsynchronously);
        bool start;
        lock (_lock)
        {
            _pending.Add((correlationId, result));
            start = !_running;
            _running = true;
        }

        if (start)
            _ = Task.Run(RunAsync, CancellationToken.None);
        return result.Task.WaitAsync(cancellationToken);
    }

    async Task RunAsync()
    {
        while (true)
        {
            List<(Guid Id, TaskCompletionSource<object?[]?> Result)> batch;
            lock (_lock)
            {
                if (_pending.Count == 0)
                {
                    _running = false;
                    return;
                }

                if (_pending.Count <= MaxBatch)
                {
                    batch = _pending;
                    _pending = [];
                }
                else
                {
                    batch = _pending[..MaxBatch];
                    _pending.RemoveRange(0, MaxBatch);
                }
            }

            try
            {
                var found = await ReadAsync(batch.Select(b => b.Id).Distinct().ToArray()).ConfigureAwait(false);
                foreach (var (id, result) in batch)
                    result.TrySetResult(found.TryGetValue(id, out var values) ? values : null);
            }
            catch (Exception exception)
            {
                // Each waiting event fails as its own read would have (the endpoint's retry policy takes it from there).
                foreach (var (_, result) in batch)
                    result.TrySetException(exception);
            }
        }
    }

    async Task<Dictionary<Guid, object?[]>> ReadAsync(Guid[] ids)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(dbContextType);
        var properties = Properties(db) ?? throw new InvalidOperationException($"Saga {typeof(TSaga).Name} is not mapped to plain columns");
        var instances = await db.Set<TSaga>().Where(s => ids.Contains(s.CorrelationId)).ToListAsync().ConfigureAwait(false);
        var found = new Dictionary<Guid, object?[]>(instances.Count);
        foreach (var instance in instances)
            found[instance.CorrelationId] = SagaInstanceCache<TSaga>.Snapshot(db.Entry(instance), properties);
        return found;
    }
}
