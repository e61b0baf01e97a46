using Integration.Host.Configuration;
using Integration.Host.Features;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Integration.Host.Persistence;

/// <summary>Registers the host's <see cref="HostDbContext"/> on PostgreSQL and applies migrations before the bus starts.</summary>
public static class PersistenceExtensions
{
    /// <summary>Adds the DbContext, the start-up migrator and the database health check.</summary>
    public static IHostApplicationBuilder AddPersistence(this IHostApplicationBuilder builder, IReadOnlyList<IHostFeature> features)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(features);
        builder.Services.AddDbContext<HostDbContext>((services, options) =>
        {
            var postgres = services.GetRequiredService<IOptions<PostgresOptions>>().Value;
            options.UseNpgsql(postgres.ConnectionString, npgsql => npgsql.EnableRetryOnFailure(3));
        });

        // Registered before the bus so migrations are in place when consumers start.
        builder.Services.AddHostedService<DatabaseMigrator>();
        return builder;
    }
}
