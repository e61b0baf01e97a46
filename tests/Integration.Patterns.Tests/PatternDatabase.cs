using Integration.Patterns.Storage;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Tests;

/// <summary>A user's DbContext with the pattern tables added by one call.</summary>
public sealed class PatternsDbContext(DbContextOptions<PatternsDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationPatterns();
}

/// <summary>A database of the spec's own with the pattern tables, and the registrations that point the patterns at it.</summary>
public static class PatternDatabase
{
    public static async Task<TestDatabase> CreateAsync()
    {
        var database = await (await IntegrationInfrastructure.GetAsync()).CreateDatabaseAsync("patterns");
        await using var context = Open(database);
        await context.Database.EnsureCreatedAsync();
        return database;
    }

    public static PatternsDbContext Open(TestDatabase database) =>
        new(new DbContextOptionsBuilder<PatternsDbContext>().UseNpgsql(database.ConnectionString).Options);

    public static Action<IServiceCollection> Store(TestDatabase database) => services =>
    {
        services.AddDbContext<PatternsDbContext>(o => o.UseNpgsql(database.ConnectionString));
        services.AddIntegrationPatternStore<PatternsDbContext>();
    };

    public static async Task<long> CountAsync(TestDatabase database, string sql)
    {
        await using var context = Open(database);
        return await context.Database.SqlQueryRaw<long>(sql).SingleAsync();
    }
}
