using System.Runtime.CompilerServices;
using Microsoft.Extensions.Caching.Hybrid;

namespace Integration.Caching;

/// <summary>A value read through the cache, and whether it came from the cache (<c>X-Cache: hit</c>) or from its source.</summary>
/// <param name="Value">The value.</param>
/// <param name="Hit">True when the cache had it; false when the factory ran (a miss).</param>
public sealed record CacheRead<T>(T Value, bool Hit);

/// <summary>Cache-aside reads on <see cref="HybridCache"/> that say whether they hit.</summary>
public static class HybridCacheReads
{
    /// <summary>
    /// Reads <paramref name="key"/> from the cache, or runs <paramref name="factory"/> and stores its result with
    /// <paramref name="options"/> and <paramref name="tags"/> (HybridCache's stampede protection: concurrent misses of one
    /// key run the factory once).
    /// </summary>
    public static async ValueTask<CacheRead<T>> ReadThroughAsync<T>(this HybridCache cache, string key, Func<CancellationToken, ValueTask<T>> factory,
        HybridCacheEntryOptions? options = null, IEnumerable<string>? tags = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentException.ThrowIfNullOrWhiteSpace(key);
        ArgumentNullException.ThrowIfNull(factory);
        var miss = new StrongBox<bool>();
        var value = await cache.GetOrCreateAsync(key, (factory, miss), static async (state, token) =>
        {
            state.miss.Value = true;
            return await state.factory(token).ConfigureAwait(false);
        }, options, tags, cancellationToken).ConfigureAwait(false);
        return new CacheRead<T>(value, !miss.Value);
    }
}
