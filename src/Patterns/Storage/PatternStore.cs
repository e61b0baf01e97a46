using Integration.Patterns.Aggregation;
using Integration.Patterns.ClaimCheck;
using Integration.Patterns.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Storage;

/// <summary>Adds the tables of the stateful patterns (aggregator, resequencer, claim check) to a user's model.</summary>
public static class PatternStoreModelBuilderExtensions
{
    /// <summary>
    /// Call once in <c>OnModelCreating</c>: maps the aggregation tables (<c>integration_aggregation_groups</c>,
    /// <c>integration_aggregation_messages</c>, shared by the aggregator and the resequencer) and the claim check's
    /// <c>integration_claims</c>. Create them with your migrations (or <c>EnsureCreated</c> in tests).
    /// </summary>
    public static ModelBuilder AddIntegrationPatterns(this ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.AddIntegrationAggregation();
        modelBuilder.AddIntegrationClaimCheck();
        return modelBuilder;
    }
}

/// <summary>Tells the stateful patterns which DbContext holds their tables.</summary>
public static class PatternStoreRegistration
{
    /// <summary>
    /// The aggregator, resequencer and claim check keep their state in <typeparamref name="TDbContext"/> (registered
    /// by you with <c>AddDbContext</c>, on PostgreSQL; its model calls <c>modelBuilder.AddIntegrationPatterns()</c>).
    /// A route that uses one of them without this registration fails at bus start.
    /// </summary>
    public static IServiceCollection AddIntegrationPatternStore<TDbContext>(this IServiceCollection services)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton(new PatternStore(typeof(TDbContext)));
        return services;
    }
}

/// <summary>Where the stateful patterns' tables are: a DbContext type, resolved in a scope of its own per unit of work.</summary>
public sealed class PatternStore
{
    internal PatternStore(Type contextType) => ContextType = contextType;

    /// <summary>The DbContext type.</summary>
    public Type ContextType { get; }

    /// <summary>The store registered for a route's step; a route that needs one and has none fails at bus start.</summary>
    internal static PatternStore Require(RouteStepContext step, string kind) =>
        step.Services.GetService<PatternStore>()
        ?? throw new RouteConfigurationException([
            $"Route '{step.Route}', step {step.Index} ({kind}): keeps its state in PostgreSQL, but no store is registered; call services.AddIntegrationPatternStore<TDbContext>() with a DbContext whose model calls modelBuilder.AddIntegrationPatterns()",
        ]);

    /// <summary>Runs <paramref name="work"/> in one transaction on a fresh DbContext, with the provider's retry strategy.</summary>
    internal async Task<T> InTransactionAsync<T>(IServiceProvider services, Func<DbContext, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(ContextType);
        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async () =>
        {
            db.ChangeTracker.Clear();
            await using IDbContextTransaction transaction = await db.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            var result = await work(db).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return result;
        }).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="work"/> on a fresh DbContext without an explicit transaction.</summary>
    internal async Task<T> RunAsync<T>(IServiceProvider services, Func<DbContext, Task<T>> work)
    {
        await using var scope = services.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(ContextType);
        return await work(db).ConfigureAwait(false);
    }
}
