using MassTransit;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Caching;

/// <summary>
/// Cache-aside with event-driven invalidation in one registration call: HybridCache (if the host has not added it) and a
/// queue per host bound to the declared events, so every host evicts what an event made stale.
/// </summary>
public static class CacheInvalidationRegistration
{
    /// <summary>
    /// Adds the invalidations declared in <paramref name="configure"/>: this host's queue (<c>{QueuePrefix}-{instance}</c>,
    /// non-durable and auto-delete: the broker deletes it when the host's connection goes, so no broker state outlives the host) consumes each declared event and evicts its keys and
    /// tags from this host's <see cref="HybridCache"/>. Call it among the bus registrations, once; configure the cache
    /// itself (entry TTLs, size limits) with <c>services.AddHybridCache(...)</c>.
    /// </summary>
    public static IBusRegistrationConfigurator AddCacheInvalidation(this IBusRegistrationConfigurator bus, Action<CacheInvalidationConfigurator> configure)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(configure);
        if (bus.Any(d => d.ServiceType == typeof(CacheInvalidationMetrics)))
            throw new InvalidOperationException("AddCacheInvalidation is called twice; declare every event in one call");
        var caching = new CacheInvalidationConfigurator();
        configure(caching);
        var failures = caching.Validate().ToList();
        if (failures.Count > 0)
            throw new InvalidOperationException(string.Join(Environment.NewLine, failures));

        // One queue per host instance: a fresh name per registration, so two hosts (or two in one test process) never share it.
        var queue = $"{caching.QueuePrefix}-{Guid.NewGuid().ToString("N")[..8]}";
        bus.AddHybridCache();
        bus.AddMetrics();
        bus.AddSingleton<CacheInvalidationMetrics>();
        foreach (var rule in caching.Rules)
            rule.Register(bus, e => e.Name = queue);
        bus.AddConfigureEndpointsCallback((context, name, endpoint) =>
        {
            if (name != queue)
                return;
            endpoint.UseMessageRetry(r => r.Intervals(100, 500, 1000));
            if (endpoint is IRabbitMqReceiveEndpointConfigurator rabbit)
            {
                // With Integration:RabbitMq:QueueType=Quorum every queue is a quorum queue, which can be neither auto-delete
                // nor transient: this host's queue is durable and expires once unused for five minutes instead.
                var quorum = string.Equals(context.GetService<Microsoft.Extensions.Configuration.IConfiguration>()?["Integration:RabbitMq:QueueType"],
                    "Quorum", StringComparison.OrdinalIgnoreCase);
                rabbit.Durable = quorum;
                rabbit.AutoDelete = !quorum;
                if (quorum)
                    rabbit.QueueExpiration = TimeSpan.FromMinutes(5);
            }
        });
        return bus;
    }
}
