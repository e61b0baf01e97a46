using System.Collections.Concurrent;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata;

namespace Integration.Sagas.Postgres;

/// <summary>
/// The last committed column values (the <c>xmin</c> row version included) of up to a bounded number of saga instances,
/// for <see cref="PostgresSagaRepositoryOptions.InstanceCacheSize"/>. An instance restored from it is attached as
/// unchanged with its cached row version, so the repository's <c>UPDATE ... WHERE xmin = cached</c> is the only guard
/// needed: a stale entry fails it and is dropped. Immutable snapshots: one array per instance, replaced, never changed.
/// </summary>
sealed class SagaInstanceCache<TSaga>(int capacity)
    where TSaga : class, ISaga
{
    readonly ConcurrentDictionary<Guid, object?[]> _entries = new();
    IProperty[]? _properties;
    bool? _supported;

    /// <summary>False for sagas mapped with navigations, owned or complex types (their state is not only the row's columns).</summary>
    public bool Supports(DbContext db)
    {
        if (_supported is { } known)
            return known;
        _properties = PlainColumns(db);
        _supported = _properties is not null;
        return _properties is not null;
    }

    /// <summary>
    /// The saga's mapped properties when its state is exactly its row's columns (no navigations, owned or complex types, a
    /// parameterless constructor), so that an instance can be rebuilt from column values; else null.
    /// </summary>
    internal static IProperty[]? PlainColumns(DbContext db)
    {
        var entity = db.Model.FindEntityType(typeof(TSaga));
        var plain = entity is not null && !entity.GetNavigations().Any() && !entity.GetSkipNavigations().Any()
                    && !entity.GetComplexProperties().Any() && !entity.IsOwned()
                    && typeof(TSaga).GetConstructor(Type.EmptyTypes) is not null;
        return plain ? entity!.GetProperties().ToArray() : null;
    }

    /// <summary>Attaches the cached instance to <paramref name="db"/> as unchanged, or returns null when none is cached.</summary>
    public TSaga? Restore(DbContext db, Guid correlationId) =>
        !_entries.TryGetValue(correlationId, out var values) || _properties is null ? null : Attach(db, correlationId, values, _properties);

    /// <summary>Attaches an instance with these column values (the row version included) to <paramref name="db"/> as unchanged.</summary>
    internal static TSaga Attach(DbContext db, Guid correlationId, object?[] values, IProperty[] properties)
    {
        var instance = Activator.CreateInstance<TSaga>();
        instance.CorrelationId = correlationId;
        var entry = db.Attach(instance);
        for (var i = 0; i < properties.Length; i++)
        {
            var property = properties[i];
            if (property.IsPrimaryKey())
                continue;
            entry.Property(property.Name).CurrentValue = values[i];
            entry.Property(property.Name).OriginalValue = values[i];
        }

        entry.State = EntityState.Unchanged;
        return instance;
    }

    /// <summary>The column values of a tracked instance, in <paramref name="properties"/>' order.</summary>
    internal static object?[] Snapshot(EntityEntry<TSaga> entry, IProperty[] properties)
    {
        var values = new object?[properties.Length];
        for (var i = 0; i < properties.Length; i++)
            values[i] = entry.Property(properties[i].Name).CurrentValue;
        return values;
    }

    /// <summary>Keeps the committed values of <paramref name="entry"/> (after its save: the row version EF Core read back).</summary>
    public void Store(EntityEntry<TSaga> entry)
    {
        if (_properties is null)
            return;
        var values = Snapshot(entry, _properties);
        if (_entries.Count >= capacity && !_entries.ContainsKey(entry.Entity.CorrelationId))
        {
            // Bounded: drop an arbitrary tenth when full (the cache is a shortcut, never the truth).
            foreach (var key in _entries.Keys.Take(Math.Max(1, capacity / 10)))
                _entries.TryRemove(key, out _);
        }

        _entries[entry.Entity.CorrelationId] = values;
    }

    public void Evict(Guid correlationId) => _entries.TryRemove(correlationId, out _);

    public int Count => _entries.Count;
}
