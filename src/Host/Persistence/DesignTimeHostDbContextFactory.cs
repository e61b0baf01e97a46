using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Integration.Host.Persistence;

/// <summary>
/// Lets <c>dotnet ef migrations add</c> build the model without starting the host or reading its configuration
/// (no database is contacted when adding a migration).
/// </summary>
public sealed class DesignTimeHostDbContextFactory : IDesignTimeDbContextFactory<HostDbContext>
{
    /// <inheritdoc />
    public HostDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<HostDbContext>().UseNpgsql("Host=localhost;Database=integration_design_time").Options);
}
