using System.Collections.Concurrent;
using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Integration.Sagas.Postgres;

/// <summary>Registers the PostgreSQL saga repository on a saga's MassTransit registration, in one call.</summary>
public static class PostgresSagaRepositoryRegistrationExtensions
{
    /// <summary>
    /// Stores the saga's instances in PostgreSQL through the scoped <typeparamref name="TDbContext"/> (registered with
    /// <c>AddDbContext</c>; map the saga with <c>modelBuilder.AddIntegrationSagaState&lt;TSaga&gt;(...)</c>):
    /// <c>x.AddSagaStateMachine&lt;M, S&gt;().PostgresRepository&lt;AppDbContext&gt;(o =&gt; o.ConcurrencyMode = SagaConcurrencyMode.Pessimistic)</c>.
    /// The saga type comes from the registration. The options are checked here: a bad value throws naming the saga and the setting.
    /// </summary>
    /// <typeparam name="TDbContext">The DbContext whose model maps the saga.</typeparam>
    /// <param name="configurator">The saga's registration, from <c>AddSagaStateMachine</c> or <c>AddSaga</c>.</param>
    /// <param name="configure">Concurrency mode, conflict retries, transactional outbox.</param>
    public static ISagaRegistrationConfigurator PostgresRepository<TDbContext>(this ISagaRegistrationConfigurator configurator,
        Action<PostgresSagaRepositoryOptions>? configure = null)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(configurator);
        // MassTransit's saga registration is ISagaRegistrationConfigurator<TSaga>: take TSaga from it, so the call names only the DbContext.
        var saga = configurator.GetType().GetInterfaces()
            .FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(ISagaRegistrationConfigurator<>))?.GetGenericArguments()[0]
            ?? throw new ArgumentException($"PostgresRepository<{typeof(TDbContext).Name}>() needs a saga registration (ISagaRegistrationConfigurator<TSaga>), " +
                $"not {configurator.GetType().Name}", nameof(configurator));
        var options = new PostgresSagaRepositoryOptions();
        configure?.Invoke(options);
        var failures = options.Validate().ToList();
        if (failures.Count > 0)
            throw new ArgumentException($"PostgresRepository<{typeof(TDbContext).Name}>() for saga {saga.Name}: {string.Join("; ", failures)}", nameof(configure));

        UseRepositoryMethod.MakeGenericMethod(saga, typeof(TDbContext)).Invoke(null, [configurator, options]);
        return configurator;
    }

    static readonly System.Reflection.MethodInfo UseRepositoryMethod =
        typeof(PostgresSagaRepositoryRegistrationExtensions).GetMethod(nameof(UseRepository), System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;

    static void UseRepository<TSaga, TDbContext>(ISagaRegistrationConfigurator configurator, PostgresSagaRepositoryOptions options)
        where TSaga : class, ISaga
        where TDbContext : DbContext =>
        ((ISagaRegistrationConfigurator<TSaga>)configurator).Repository(services => Register<TSaga, TDbContext>(services, options));

    static void Register<TSaga, TDbContext>(IServiceCollection services, PostgresSagaRepositoryOptions options)
        where TSaga : class, ISaga
        where TDbContext : DbContext
    {
        services.AddMetrics();
        services.TryAddSingleton<SagasMetrics>();
        services.TryAddSingleton<SagaLockStatements>();
        Integration.Outbox.Transactions.DeferredTransactions.Register<TDbContext>(services);

        var cache = options.InstanceCacheSize > 0 ? new SagaInstanceCache<TSaga>(options.InstanceCacheSize) : null;
        if (options.BatchReads)
            services.TryAddSingleton(provider => new SagaReadBatcher<TSaga>(provider.GetRequiredService<IServiceScopeFactory>(), typeof(TDbContext)));

        PostgresSagaRepositoryContextFactory<TSaga> Create(IServiceProvider provider) =>
            new(provider.GetRequiredService<TDbContext>(), options, provider.GetRequiredService<SagasMetrics>(),
                provider.GetRequiredService<SagaLockStatements>(), provider.GetService<ILoggerFactory>()?.CreateLogger("Integration.Sagas.Postgres"),
                provider.GetService<Integration.Outbox.Transactions.DeferredTransactionInterceptor>(), cache,
                options.BatchReads ? provider.GetRequiredService<SagaReadBatcher<TSaga>>() : null);

        services.RegisterLoadSagaRepository<TSaga, PostgresSagaRepositoryContextFactory<TSaga>>();
        services.RegisterQuerySagaRepository<TSaga, PostgresSagaRepositoryContextFactory<TSaga>>();
        services.RegisterSagaRepository<TSaga, DbContext, SagaConsumeContextFactory<DbContext, TSaga>, PostgresSagaRepositoryContextFactory<TSaga>>();

        // MassTransit's helpers register the factories by type; ours needs the DbContext and options, so replace them.
        services.Replace(ServiceDescriptor.Scoped<ISagaRepositoryContextFactory<TSaga>>(Create));
        services.Replace(ServiceDescriptor.Scoped<IQuerySagaRepositoryContextFactory<TSaga>>(Create));
        services.Replace(ServiceDescriptor.Scoped<ILoadSagaRepositoryContextFactory<TSaga>>(Create));
    }
}

/// <summary>The pessimistic mode's <c>SELECT … FOR UPDATE</c> per model and saga type, built once per container from the mapped names.</summary>
sealed class SagaLockStatements
{
    readonly ConcurrentDictionary<(IModel Model, Type Saga), string> _statements = new();

    public string For<TSaga>(IModel model)
        where TSaga : class, ISaga =>
        _statements.GetOrAdd((model, typeof(TSaga)), static key => Build(key.Model, key.Saga));

    static string Build(IModel model, Type saga)
    {
        var entity = model.FindEntityType(saga)
            ?? throw new InvalidOperationException($"The saga {saga.Name} is not mapped in the DbContext: call modelBuilder.AddIntegrationSagaState<{saga.Name}>(...) in OnModelCreating");
        var table = entity.GetTableName()
            ?? throw new InvalidOperationException($"The saga {saga.Name} is not mapped to a table");
        var schema = entity.GetSchema();
        var store = StoreObjectIdentifier.Table(table, schema);
        var key = entity.FindProperty(nameof(ISaga.CorrelationId))!.GetColumnName(store)!;
        var hasXmin = entity.GetProperties().Any(p => p.GetColumnName(store) == "xmin");
        var qualified = schema is null ? Quote(table) : $"{Quote(schema)}.{Quote(table)}";
        // SELECT * leaves out system columns: xmin, the concurrency token, is asked for by name.
        return $"SELECT *{(hasXmin ? ", xmin" : "")} FROM {qualified} WHERE {Quote(key)} = {{0}} FOR UPDATE";
    }

    static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
