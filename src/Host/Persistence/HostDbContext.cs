using Integration.Host.Features;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Persistence;

/// <summary>The host's database: each feature adds its own entities through <see cref="IHostFeature.ConfigureModel"/>.</summary>
public sealed class HostDbContext(DbContextOptions<HostDbContext> options) : DbContext(options)
{
    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        foreach (var feature in HostFeatures.All)
            feature.ConfigureModel(modelBuilder);
    }
}
