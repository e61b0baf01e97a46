using Integration.Outbox.Relay;
using Integration.Outbox.Writing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Integration.Outbox;

/// <summary>Registers the transactional outbox for one DbContext.</summary>
public static class OutboxRegistration
{
    /// <summary>
    /// Adds <see cref="IOutbox"/> (scoped, over <typeparamref name="TDbContext"/>), the inbox's DbContext access, the relay (unless
    /// <see cref="OutboxOptions.RunRelay"/> is false), cleanup, metrics and the <c>outbox</c> health check.
    /// The DbContext must map the tables (<c>modelBuilder.AddIntegrationOutbox()</c>) and use the
    /// <see cref="OutboxNotifyInterceptor"/> (<c>options.AddInterceptors(sp.GetRequiredService&lt;OutboxNotifyInterceptor&gt;())</c>).
    /// </summary>
    public static IServiceCollection AddIntegrationOutbox<TDbContext>(this IServiceCollection services, Action<OutboxOptions>? configure = null,
        string section = "Integration:Outbox")
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = services.AddOptions<OutboxOptions>();
        if (configure is not null)
            builder.Configure(configure);
        builder.ValidateOnStart();
        services.AddSingleton<IValidateOptions<OutboxOptions>>(new OutboxOptionsValidator(section));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<OutboxNotifyInterceptor>();
        services.AddSingleton<OutboxStatistics>();
        services.AddScoped<IOutbox>(sp => new EntityFrameworkOutbox(sp.GetRequiredService<TDbContext>(), sp.GetRequiredService<TimeProvider>(), sp));
        services.AddScoped(sp => new Inbox.OutboxDbContext(sp.GetRequiredService<TDbContext>()));
        services.AddSingleton<OutboxRelay<TDbContext>>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxRelay<TDbContext>>());
        services.AddHealthChecks().AddCheck<OutboxHealthCheck>("outbox", tags: ["ready"]);
        return services;
    }

    sealed class OutboxOptionsValidator(string section) : IValidateOptions<OutboxOptions>
    {
        public ValidateOptionsResult Validate(string? name, OutboxOptions options)
        {
            var failures = options.Validate(section).ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}

/// <summary>Degraded while the oldest undelivered message is older than <see cref="OutboxOptions.DegradedAfter"/>.</summary>
public sealed class OutboxHealthCheck(OutboxStatistics statistics, IOptions<OutboxOptions> options) : IHealthCheck
{
    /// <inheritdoc />
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["undelivered"] = statistics.Undelivered, ["oldestAgeSeconds"] = statistics.OldestAge.TotalSeconds };
        return Task.FromResult(statistics.OldestAge > options.Value.DegradedAfter
            ? HealthCheckResult.Degraded($"{statistics.Undelivered} outbox message(s) waiting; the oldest for {statistics.OldestAge.TotalSeconds:0} s", data: data)
            : HealthCheckResult.Healthy($"{statistics.Undelivered} outbox message(s) waiting", data));
    }
}
