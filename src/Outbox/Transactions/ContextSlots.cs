using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Outbox.Transactions;

/// <summary>
/// What the outbox's interceptors keep per DbContext instance (the save in progress, the unit of work), held by the
/// instance itself: a scoped service of EF Core's own per-context service provider, which <see cref="ContextSlotsExtension"/>
/// adds to the options our registrations configure. Not thread-safe, as a DbContext is not.
/// </summary>
sealed class ContextSlots
{
    // One slot per interceptor table that ever used this instance (at most three); a removed value leaves its slot empty
    // for the next save, so a save in progress allocates nothing here.
    (object Key, object? Value)[] _entries = [];

    public object? Get(object key)
    {
        foreach (var (k, value) in _entries)
        {
            if (ReferenceEquals(k, key))
                return value;
        }

        return null;
    }

    public void Set(object key, object? value)
    {
        for (var i = 0; i < _entries.Length; i++)
        {
            if (ReferenceEquals(_entries[i].Key, key))
            {
                _entries[i].Value = value;
                return;
            }
        }

        if (value is not null)
            _entries = [.. _entries, (key, value)];
    }

    public void Remove(object key) => Set(key, null);
}

/// <summary>Registers <see cref="ContextSlots"/> in EF Core's per-context service provider (one instance per DbContext instance).</summary>
sealed class ContextSlotsExtension : IDbContextOptionsExtension
{
    public static readonly ContextSlotsExtension Instance = new();

    ContextSlotsExtension() => Info = new ExtensionInfo(this);

    public DbContextOptionsExtensionInfo Info { get; }

    public void ApplyServices(IServiceCollection services) => services.AddScoped<ContextSlots>();

    public void Validate(IDbContextOptions options)
    {
    }

    /// <summary>Adds the extension to <paramref name="options"/> (idempotent).</summary>
    public static void AddTo(DbContextOptionsBuilder options) =>
        ((IDbContextOptionsBuilderInfrastructure)options).AddOrUpdateExtension(Instance);

    sealed class ExtensionInfo(IDbContextOptionsExtension extension) : DbContextOptionsExtensionInfo(extension)
    {
        public override bool IsDatabaseProvider => false;

        public override string LogFragment => "";

        public override int GetServiceProviderHashCode() => 0;

        public override bool ShouldUseSameServiceProvider(DbContextOptionsExtensionInfo other) => other is ExtensionInfo;

        public override void PopulateDebugInfo(IDictionary<string, string> debugInfo) => debugInfo["Integration.Outbox:ContextSlots"] = "1";
    }
}

/// <summary>
/// One interceptor's state per DbContext instance, in the instance's <see cref="ContextSlots"/>: no
/// <see cref="ConditionalWeakTable{TKey,TValue}"/> in the path of every save (each of its entries is a dependent GC handle,
/// and its containers are finalized as it grows and shrinks: 4–8 % of the bench process's CPU in the saturated outbox).
/// Options built without <see cref="ContextSlotsExtension"/> (an interceptor added by hand) fall back to such a table.
/// </summary>
sealed class ContextTable<T>
    where T : class
{
    readonly ConditionalWeakTable<DbContext, T> _fallback = [];

    public bool TryGetValue(DbContext db, [MaybeNullWhen(false)] out T value)
    {
        if (Slots(db) is { } slots)
        {
            value = slots.Get(this) as T;
            return value is not null;
        }

        return _fallback.TryGetValue(db, out value);
    }

    public void AddOrUpdate(DbContext db, T value)
    {
        if (Slots(db) is { } slots)
            slots.Set(this, value);
        else
            _fallback.AddOrUpdate(db, value);
    }

    public void Remove(DbContext db)
    {
        if (Slots(db) is { } slots)
            slots.Remove(this);
        else
            _fallback.Remove(db);
    }

    /// <summary>The instance's slots; null without the extension, or once the instance is disposed (its state went with it).</summary>
    static ContextSlots? Slots(DbContext db)
    {
        try
        {
            return ((IInfrastructure<IServiceProvider>)db).Instance.GetService(typeof(ContextSlots)) as ContextSlots;
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
    }
}
