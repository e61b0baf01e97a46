using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Caching;

/// <summary>
/// Declares which bus events evict which cache entries: <see cref="Invalidate{T}"/> names the keys and the tags an event
/// makes stale. Every host of the service evicts them from its own cache, through a queue of its own.
/// </summary>
public sealed class CacheInvalidationConfigurator
{
    readonly List<CacheInvalidation> _rules = [];

    internal CacheInvalidationConfigurator()
    {
    }

    /// <summary>
    /// First part of the per-host queue's name, <c>{QueuePrefix}-{instance}</c> (non-durable, auto-delete);
    /// <c>cache-invalidation</c> by default.
    /// </summary>
    public string QueuePrefix { get; set; } = "cache-invalidation";

    /// <summary>
    /// Every <typeparamref name="T"/> published on the bus removes the entries <paramref name="keys"/> returns and every
    /// entry tagged with one of the <paramref name="tags"/> (e.g. the lists that contain the changed item), on every host.
    /// An event that yields an empty key or tag goes to the queue's <c>_error</c> queue with the reason.
    /// </summary>
    /// <param name="keys">The cache keys the event makes stale, e.g. <c>m =&gt; [$"part:{m.Sku}"]</c>.</param>
    /// <param name="tags">The tags whose entries it makes stale, e.g. <c>m =&gt; ["parts-list"]</c>.</param>
    public CacheInvalidationConfigurator Invalidate<T>(Func<T, IEnumerable<string>> keys, Func<T, IEnumerable<string>>? tags = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(keys);
        _rules.Add(new CacheInvalidation<T>(keys, tags));
        return this;
    }

    internal IReadOnlyList<CacheInvalidation> Rules => _rules;

    internal IEnumerable<string> Validate()
    {
        if (_rules.Count == 0)
            yield return "AddCacheInvalidation: declare at least one event with Invalidate<T>(...)";
        foreach (var duplicate in _rules.GroupBy(r => r.MessageType).Where(g => g.Count() > 1))
            yield return $"AddCacheInvalidation: {duplicate.Key.Name} is declared {duplicate.Count()} times; declare each event once";
        if (string.IsNullOrWhiteSpace(QueuePrefix) || QueuePrefix.Length > 100)
            yield return "AddCacheInvalidation: QueuePrefix is required, at most 100 characters";
    }
}

/// <summary>One declared event: what it evicts.</summary>
abstract class CacheInvalidation
{
    public abstract Type MessageType { get; }

    public abstract void Register(IBusRegistrationConfigurator bus, Action<IEndpointRegistrationConfigurator> endpoint);
}

sealed class CacheInvalidation<T>(Func<T, IEnumerable<string>> keys, Func<T, IEnumerable<string>>? tags) : CacheInvalidation
    where T : class
{
    public override Type MessageType => typeof(T);

    public IReadOnlyList<string> KeysOf(T message) => Check(keys(message), "key");

    public IReadOnlyList<string> TagsOf(T message) => tags is null ? [] : Check(tags(message), "tag");

    static IReadOnlyList<string> Check(IEnumerable<string>? values, string what)
    {
        var list = (values ?? []).ToList();
        if (list.Any(string.IsNullOrWhiteSpace))
            throw new InvalidOperationException($"Cache invalidation: {typeof(T).Name} yielded an empty {what} ({string.Join(", ", list.Select(v => $"'{v}'"))})");
        return list;
    }

    public override void Register(IBusRegistrationConfigurator bus, Action<IEndpointRegistrationConfigurator> endpoint)
    {
        bus.AddSingleton(this);
        bus.AddConsumer<CacheInvalidator<T>>().Endpoint(endpoint);
    }
}
