using System.Text.Json;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Testing;

/// <summary>
/// Instances of <typeparamref name="TSaga"/> as the host's saga repository stored them: read one, await one reaching a
/// state. A timeout lists every state the instance was seen in, and the last stored instance.
/// </summary>
/// <typeparam name="TSaga">The saga's state class, mapped by one of the host's DbContexts.</typeparam>
public sealed class SagaHarness<TSaga>
    where TSaga : class, SagaStateMachineInstance
{
    static readonly JsonSerializerOptions Json = new() { WriteIndented = false };
    readonly IServiceProvider _services;
    readonly Type _dbContextType;

    internal SagaHarness(IServiceProvider services, IReadOnlyList<Type> dbContextTypes)
    {
        _services = services;
        var mapping = HostDbContexts.Mapping(services, dbContextTypes, typeof(TSaga));
        _dbContextType = mapping.Count == 1
            ? mapping[0]
            : throw new InvalidOperationException(
                $"{typeof(TSaga).Name} must be mapped by exactly one DbContext of the host; mapped by {HostDbContexts.Names(mapping)} " +
                $"of the registered {HostDbContexts.Names(dbContextTypes)}");
    }

    /// <summary>The stored instance, or null while there is none.</summary>
    public async Task<TSaga?> FindAsync(Guid correlationId, CancellationToken cancellationToken = default)
    {
        await using var scope = _services.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(_dbContextType);
        return await db.Set<TSaga>().AsNoTracking().FirstOrDefaultAsync(s => s.CorrelationId == correlationId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The name of the state the stored instance is in (read through the host's state machine), or null while there is none.</summary>
    public async Task<string?> StateAsync(Guid correlationId, CancellationToken cancellationToken = default) =>
        await FindAsync(correlationId, cancellationToken).ConfigureAwait(false) is { } saga ? await StateOf(saga).ConfigureAwait(false) : null;

    /// <summary>Awaits the stored instance; fails after <paramref name="timeout"/> (30 seconds by default).</summary>
    public Task<TSaga> WaitForAsync(Guid correlationId, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        WaitForAsync(correlationId, $"{typeof(TSaga).Name} {correlationId} stored", _ => true, timeout, cancellationToken);

    /// <summary>
    /// Awaits the stored instance in state <paramref name="state"/> (the state's name, e.g. <c>nameof(Machine.Completed)</c>) and
    /// returns it; fails after <paramref name="timeout"/> (30 seconds by default) listing every state the instance was seen in.
    /// </summary>
    public Task<TSaga> WaitForStateAsync(Guid correlationId, string state, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(state);
        return WaitForAsync(correlationId, $"{typeof(TSaga).Name} {correlationId} in state {state}", s => s == state, timeout, cancellationToken);
    }

    async Task<TSaga> WaitForAsync(Guid correlationId, string awaited, Func<string, bool> inState, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var seen = new List<string>();
        TSaga? last = null;
        await Observe.UntilAsync(awaited, async token =>
        {
            last = await FindAsync(correlationId, token).ConfigureAwait(false);
            var current = last is null ? "(not stored)" : await StateOf(last).ConfigureAwait(false);
            if (seen.Count == 0 || seen[^1] != current)
                seen.Add(current);
            return last is not null && inState(current);
        }, done => done, () => $"states {string.Join(" → ", seen)}; last stored: {Describe(last)}", timeout, cancellationToken).ConfigureAwait(false);
        return last!;
    }

    Task<string> StateOf(TSaga saga)
    {
        _states ??= _services.GetService<SagaStateMachine<TSaga>>() is { } machine
            ? machine.States.Select(state => (state.Name, Is: machine.Accessor.GetStateExpression(state).Compile())).ToList()
            : [];
        foreach (var (name, isIn) in _states)
        {
            if (isIn(saga))
                return Task.FromResult(name);
        }

        return Task.FromResult(typeof(TSaga).GetProperty("CurrentState")?.GetValue(saga)?.ToString() ?? "(no state)");
    }

    List<(string Name, Func<TSaga, bool> Is)>? _states;

    static string Describe(TSaga? saga)
    {
        if (saga is null)
            return "none";
        try
        {
            return JsonSerializer.Serialize(saga, saga.GetType(), Json);
        }
        catch (Exception exception) when (exception is NotSupportedException or JsonException or InvalidOperationException)
        {
            return saga.ToString() ?? typeof(TSaga).Name;
        }
    }
}
