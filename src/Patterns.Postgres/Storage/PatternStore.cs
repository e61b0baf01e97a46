using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Postgres.ClaimCheck;
using Integration.Patterns.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Postgres.Storage;

/// <summary>
/// The pattern tables as SQL names (schema-qualified and quoted), read from the DbContext's model: the raw SQL of the
/// stateful patterns uses exactly the tables <c>AddIntegrationPatterns(schema)</c> mapped, in whatever schema.
/// </summary>
internal sealed record PatternTables(string Groups, string Messages, string Claims)
{
    public static PatternTables From(DbContext db)
    {
        var sql = db.GetService<ISqlGenerationHelper>();
        return new PatternTables(Name(typeof(AggregationGroupState)), Name(typeof(AggregationMessageState)), Name(typeof(ClaimState)));

        string Name(Type entity)
        {
            var type = db.Model.FindEntityType(entity)
                       ?? throw new InvalidOperationException(
                           $"{db.GetType().Name} does not map the pattern tables; call modelBuilder.AddIntegrationPatterns() in its OnModelCreating");
            var table = type.GetTableName() ?? throw new InvalidOperationException($"{db.GetType().Name} maps {entity.Name} to no table");
            // Escaped for the composite-format strings the SQL is written in ({0} are parameters).
            return sql.DelimitIdentifier(table, type.GetSchema()).Replace("{", "{{", StringComparison.Ordinal).Replace("}", "}}", StringComparison.Ordinal);
        }
    }
}

/// <summary>Where the stateful patterns' tables are: a DbContext type, resolved in a scope of its own per unit of work.</summary>
internal sealed class PatternStore
{
    PatternTables? _tables;

    internal PatternStore(Type contextType) => ContextType = contextType;

    /// <summary>The DbContext type.</summary>
    public Type ContextType { get; }

    /// <summary>
    /// The store registered for a route's step, its model checked; a route that needs one and has none (or whose
    /// DbContext does not map the tables) fails at bus start.
    /// </summary>
    internal static PatternStore Require(RouteStepContext step, string kind)
    {
        var where = $"Route '{step.Route}', step {step.Index} ({kind})";
        var store = step.Services.GetService<PatternStore>()
                    ?? throw new RouteConfigurationException([
                        $"{where}: keeps its state in PostgreSQL, but no store is registered; call services.AddIntegrationPatternStore<TDbContext>() with a DbContext whose model calls modelBuilder.AddIntegrationPatterns()",
                    ]);
        try
        {
            using var scope = step.Services.CreateScope();
            store.TablesOf((DbContext)scope.ServiceProvider.GetRequiredService(store.ContextType));
        }
        catch (InvalidOperationException exception)
        {
            throw new RouteConfigurationException([$"{where}: {exception.Message}"]);
        }

        return store;
    }

    /// <summary>The tables in <paramref name="db"/>'s model (read once).</summary>
    internal PatternTables TablesOf(DbContext db) => _tables ??= PatternTables.From(db);

    /// <summary>Runs <paramref name="work"/> in one transaction on a fresh DbContext, with the provider's retry strategy.</summary>
    internal async Task<T> InTransactionAsync<T>(IServiceProvider services, Func<DbContext, PatternTables, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(ContextType);
        var tables = TablesOf(db);
        var strategy = db.Database.CreateExecutionStrategy();
        return await strategy.ExecuteAsync(async () =>
        {
            db.ChangeTracker.Clear();
            await using IDbContextTransaction transaction = await db.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            var result = await work(db, tables).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return result;
        }).ConfigureAwait(false);
    }

    /// <summary>Runs <paramref name="work"/> on a fresh DbContext without an explicit transaction.</summary>
    internal async Task<T> RunAsync<T>(IServiceProvider services, Func<DbContext, PatternTables, Task<T>> work)
    {
        await using var scope = services.CreateAsyncScope();
        var db = (DbContext)scope.ServiceProvider.GetRequiredService(ContextType);
        return await work(db, TablesOf(db)).ConfigureAwait(false);
    }
}

/// <summary>
/// SQL of the stateful patterns: the table names (<see cref="PatternTables"/>, identifiers from the model, quoted by the
/// provider) are part of the format; every value is a <c>{0}</c>, <c>{1}</c>… placeholder that EF Core sends as a parameter.
/// </summary>
internal static class PatternSql
{
    public static FormattableString Of(string format, params object?[] values) => FormattableStringFactory.Create(format, values);
}
