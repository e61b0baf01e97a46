using Integration.Outbox.Relay;
using Integration.Outbox.Writing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Integration.Outbox;

/// <summary>Registers the transactional outbox for one DbContext.</summary>
public static class OutboxRegistration
{
    /// <summary>
    /// Adds, in one call: <see cref="IOutbox"/> (scoped, over <typeparamref name="TDbContext"/>), the inbox's DbContext access,
    /// the relay (unless <see cref="OutboxOptions.RunRelay"/> is false), cleanup, metrics (meter <c>Integration.Outbox</c>),
    /// the <c>outbox</c> health check, and the <see cref="OutboxNotifyInterceptor"/> on <typeparamref name="TDbContext"/>'s
    /// options (through <c>ConfigureDbContext</c>, whether <c>AddDbContext</c> is called before or after this).
    /// <see cref="OutboxOptions"/> are bound from <c>Integration:Outbox</c>, then <paramref name="configure"/> runs (what it
    /// sets wins), then they are validated at start. The DbContext must map the tables: <c>modelBuilder.AddIntegrationOutbox()</c>.
    /// </summary>
    public static IServiceCollection AddIntegrationOutbox<TDbContext>(this IServiceCollection services, Action<OutboxOptions>? configure = null)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = services.AddOptions<OutboxOptions>().BindConfiguration(OutboxOptions.Section);
        if (configure is not null)
            builder.Configure(configure);
        builder.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<OutboxOptions>, OutboxOptionsValidator>());
        services.AddMetrics();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<OutboxNotifyInterceptor>();
        services.TryAddSingleton<OutboxStatistics>();
        services.TryAddSingleton<OutboxMetrics>();

        // EF Core applies every ConfigureDbContext<T> to T's options, registered before or after AddDbContext<T>. Singleton: it
        // also suits AddDbContextFactory/AddDbContextPool, whose options are singletons. The relay checks at start that it applied.
        services.ConfigureDbContext<TDbContext>((provider, options) =>
            {
                Transactions.ContextSlotsExtension.AddTo(options);
                var notify = provider.GetRequiredService<OutboxNotifyInterceptor>();
                options.AddInterceptors(notify, notify.Appender);
            },
            ServiceLifetime.Singleton);
        // The inbox's unit of work: its transaction begins only when the consumer needs it (one round trip otherwise).
        Transactions.DeferredTransactions.Register<TDbContext>(services);

        services.AddScoped<IOutbox>(sp => new EntityFrameworkOutbox(sp.GetRequiredService<TDbContext>(), sp.GetRequiredService<TimeProvider>(), sp));
        services.AddScoped(sp => new Inbox.OutboxDbContext(sp.GetRequiredService<TDbContext>()));
        services.AddSingleton<OutboxRelay<TDbContext>>();
        services.AddHostedService(sp => sp.GetRequiredService<OutboxRelay<TDbContext>>());
        services.AddHealthChecks().AddCheck<OutboxHealthCheck>("outbox", tags: ["ready"]);
        return services;
    }

    sealed class OutboxOptionsValidator : IValidateOptions<OutboxOptions>
    {
        public ValidateOptionsResult Validate(string? name, OutboxOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}

/// <summary>Degraded while the oldest undelivered message is older than <see cref="OutboxOptions.DegradedAfter"/>.</summary>
sealed class OutboxHealthCheck(OutboxStatistics statistics, IOptions<OutboxOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["undelivered"] = statistics.Undelivered, ["oldestAgeSeconds"] = statistics.OldestAge.TotalSeconds };
        return Task.FromResult(statistics.OldestAge > options.Value.DegradedAfter
            ? HealthCheckResult.Degraded($"{statistics.Undelivered} outbox message(s) waiting; the oldest for {statistics.OldestAge.TotalSeconds:0} s", data: data)
            : HealthCheckResult.Healthy($"{statistics.Undelivered} outbox message(s) waiting", data));
    }
}
