using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Postgres.ClaimCheck;
using Integration.Patterns.Postgres.Storage;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Postgres;

/// <summary>Adds the tables of the stateful patterns (aggregator, resequencer, claim check) to a user's model.</summary>
public static class PatternStoreModelBuilderExtensions
{
    /// <summary>Table shared by the aggregator and the resequencer: one row per group (or stream).</summary>
    public const string GroupsTable = "integration_aggregation_groups";

    /// <summary>Table shared by the aggregator and the resequencer: one row per held message.</summary>
    public const string MessagesTable = "integration_aggregation_messages";

    /// <summary>Table of the claim check's stored payloads.</summary>
    public const string ClaimsTable = "integration_claims";

    /// <summary>
    /// Call once in <c>OnModelCreating</c>: maps <c>integration_aggregation_groups</c> and
    /// <c>integration_aggregation_messages</c> (shared by the aggregator and the resequencer) and <c>integration_claims</c>
    /// (the claim check), every table and column in snake_case, in <paramref name="schema"/> (default: the model's default
    /// schema). The patterns' SQL uses the tables as mapped here. Create them with your migrations (or <c>EnsureCreated</c> in tests).
    /// </summary>
    public static ModelBuilder AddIntegrationPatterns(this ModelBuilder modelBuilder, string? schema = null)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        if (schema is not null && string.IsNullOrWhiteSpace(schema))
            throw new ArgumentException("The schema must be null (the model's default) or a name", nameof(schema));
        AggregationModel.Map(modelBuilder, schema);
        ClaimCheckModel.Map(modelBuilder, schema);
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
