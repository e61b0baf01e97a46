using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Integration.Outbox.Leases;

/// <summary>Registers the housekeeping leader election.</summary>
public static class HousekeepingRegistration
{
    /// <summary>
    /// Elects one housekeeping leader among the hosts sharing <typeparamref name="TDbContext"/>'s database (an advisory
    /// lock held on a dedicated session, <see cref="PostgresLeaderLease"/>): the outbox and inbox cleanup, the claim
    /// check's expiry, the aggregator's and resequencer's sweeps and the message store's retention then run on the
    /// leader only, and move to another host within <see cref="HousekeepingOptions.LeaseDuration"/> when it goes.
    /// Adds <see cref="IHousekeepingLeader"/>, the meter <c>Integration.Housekeeping</c> and the <c>housekeeping</c>
    /// health check (tag <c>ready</c>, data: <c>leader</c>, <c>instance</c>, <c>isLeader</c>). Options from
    /// <c>Integration:Housekeeping</c>, then <paramref name="configure"/>, validated at start.
    /// </summary>
    public static IServiceCollection AddIntegrationHousekeeping<TDbContext>(this IServiceCollection services, Action<HousekeepingOptions>? configure = null)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = services.AddOptions<HousekeepingOptions>().BindConfiguration(HousekeepingOptions.Section);
        if (configure is not null)
            builder.Configure(configure);
        builder.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<HousekeepingOptions>, HousekeepingOptionsValidator>());
        services.AddMetrics();
        services.TryAddSingleton<HousekeepingMetrics>();
        services.TryAddSingleton<HousekeepingLeader<TDbContext>>();
        services.TryAddSingleton<IHousekeepingLeader>(sp => sp.GetRequiredService<HousekeepingLeader<TDbContext>>());
        services.AddHostedService(sp => sp.GetRequiredService<HousekeepingLeader<TDbContext>>());
        services.AddHealthChecks().AddCheck<HousekeepingHealthCheck>("housekeeping", tags: ["ready"]);
        return services;
    }

    sealed class HousekeepingOptionsValidator : IValidateOptions<HousekeepingOptions>
    {
        public ValidateOptionsResult Validate(string? name, HousekeepingOptions options)
        {
            var failures = options.Validate().ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}

/// <summary>Always healthy (a standby is as healthy as the leader); says who leads.</summary>
sealed class HousekeepingHealthCheck(IHousekeepingLeader leader) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object>
        {
            ["instance"] = leader.Instance,
            ["isLeader"] = leader.IsLeader,
            ["leader"] = leader.Leader ?? "",
        };
        var description = leader.IsLeader ? $"housekeeping leader: this instance ({leader.Instance})"
            : leader.Leader is { Length: > 0 } other ? $"housekeeping leader: {other}" : "housekeeping leader: none yet";
        return Task.FromResult(HealthCheckResult.Healthy(description, data));
    }
}
