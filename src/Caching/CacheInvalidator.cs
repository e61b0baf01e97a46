using System.Diagnostics.Metrics;
using MassTransit;
using Microsoft.Extensions.Caching.Hybrid;

namespace Integration.Caching;

/// <summary>Takes a declared event from this host's queue and evicts its keys and tags from this host's cache.</summary>
sealed class CacheInvalidator<T>(HybridCache cache, CacheInvalidation<T> rule, CacheInvalidationMetrics metrics) : IConsumer<T>
    where T : class
{
    public async Task Consume(ConsumeContext<T> context)
    {
        var keys = rule.KeysOf(context.Message);
        var tags = rule.TagsOf(context.Message);
        if (keys.Count > 0)
            await cache.RemoveAsync(keys, context.CancellationToken).ConfigureAwait(false);
        if (tags.Count > 0)
            await cache.RemoveByTagAsync(tags, context.CancellationToken).ConfigureAwait(false);
        metrics.Invalidated(rule, keys.Count, tags.Count);
    }
}

/// <summary>The invalidation meter: keys and tags evicted on this host.</summary>
sealed class CacheInvalidationMetrics
{
    public const string MeterName = "Integration.Caching";
    readonly Counter<long> _keys;
    readonly Counter<long> _tags;

    public CacheInvalidationMetrics(IMeterFactory meters)
    {
        var meter = meters.Create(MeterName);
        _keys = meter.CreateCounter<long>("integration.cache.invalidated_keys", "{key}", "Cache keys this host evicted because of an event (label message)");
        _tags = meter.CreateCounter<long>("integration.cache.invalidated_tags", "{tag}", "Cache tags this host evicted because of an event (label message)");
    }

    public void Invalidated(CacheInvalidation rule, int keys, int tags)
    {
        var message = new KeyValuePair<string, object?>("message", rule.MessageType.Name);
        _keys.Add(keys, message);
        _tags.Add(tags, message);
    }
}
