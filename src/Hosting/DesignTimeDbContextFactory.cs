using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Integration.Hosting;

/// <summary>
/// Lets <c>dotnet ef migrations add</c> build the application's model without starting the host or reading its
/// configuration (no database is contacted when adding a migration). Derive once in the application:
/// <c>sealed class DesignTimeFactory : DesignTimeDbContextFactory&lt;AppDbContext&gt;;</c>
/// (<typeparamref name="TDbContext"/> needs a constructor taking <c>DbContextOptions&lt;TDbContext&gt;</c>).
/// </summary>
public abstract class DesignTimeDbContextFactory<TDbContext> : IDesignTimeDbContextFactory<TDbContext>
    where TDbContext : DbContext
{
    /// <inheritdoc />
    public TDbContext CreateDbContext(string[] args)
    {
        var options = new DbContextOptionsBuilder<TDbContext>().UseNpgsql("Host=localhost;Database=design_time").Options;
        return (TDbContext)(Activator.CreateInstance(typeof(TDbContext), options)
            ?? throw new InvalidOperationException($"{typeof(TDbContext).Name} needs a public constructor taking DbContextOptions<{typeof(TDbContext).Name}>"));
    }
}
