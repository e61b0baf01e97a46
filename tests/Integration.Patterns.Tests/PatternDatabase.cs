using Integration.Patterns.Postgres;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Tests;

/// <summary>A user's DbContext with the pattern tables added by one call.</summary>
public sealed class PatternsDbContext(DbContextOptions<PatternsDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationPatterns();
}

/// <summary>A user's DbContext that keeps the pattern tables in a schema of their own.</summary>
public sealed class SchemaPatternsDbContext(DbContextOptions<SchemaPatternsDbContext> options) : DbContext(options)
{
    public const string Schema = "patterns";

    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationPatterns(Schema);
}

/// <summary>A DbContext that forgot <c>AddIntegrationPatterns()</c>.</summary>
public sealed class UnmappedDbContext(DbContextOptions<UnmappedDbContext> options) : DbContext(options);

/// <summary>A database of the spec's own with the pattern tables, and the registrations that point the patterns at it.</summary>
public static class PatternDatabase
{
    public static Task<TestDatabase> CreateAsync() => CreateAsync<PatternsDbContext>();

    public static async Task<TestDatabase> CreateAsync<TContext>()
        where TContext : DbContext
    {
        var database = await (await IntegrationInfrastructure.GetAsync()).CreateDatabaseAsync("patterns");
        await using var context = Open<TContext>(database);
        await context.Database.EnsureCreatedAsync();
        return database;
    }

    public static PatternsDbContext Open(TestDatabase database) => Open<PatternsDbContext>(database);

    public static TContext Open<TContext>(TestDatabase database)
        where TContext : DbContext =>
        (TContext)Activator.CreateInstance(typeof(TContext), new DbContextOptionsBuilder<TContext>().UseNpgsql(database.ConnectionString).Options)!;

    public static Action<IServiceCollection> Store(TestDatabase database) => Store<PatternsDbContext>(database);

    public static Action<IServiceCollection> Store<TContext>(TestDatabase database)
        where TContext : DbContext => services =>
    {
        services.AddDbContext<TContext>(o => o.UseNpgsql(database.ConnectionString));
        services.AddIntegrationPatternStore<TContext>();
    };

    public static async Task<long> CountAsync(TestDatabase database, string sql)
    {
        await using var context = Open(database);
        return await context.Database.SqlQueryRaw<long>(sql).SingleAsync();
    }
}
