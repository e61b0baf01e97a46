using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Integration.Sagas.Postgres;

/// <summary>Registers the PostgreSQL saga repository with MassTransit's DI registration, in one call.</summary>
public static class PostgresSagaRepositoryRegistrationExtensions
{
    /// <summary>
    /// Stores the saga's instances in PostgreSQL through the application's DbContext (registered with
    /// <c>AddDbContext</c>; map the saga with <c>modelBuilder.AddSagaState&lt;TSaga&gt;(...)</c>), in one call:
    /// <c>x.AddSagaStateMachine&lt;M, S&gt;().PostgresRepository(o =&gt; { o.UseDbContext&lt;AppDbContext&gt;(); o.ConcurrencyMode = SagaConcurrencyMode.Pessimistic; })</c>.
    /// </summary>
    /// <param name="configurator">The saga's registration, from <c>AddSagaStateMachine</c> or <c>AddSaga</c>.</param>
    /// <param name="configure">The DbContext, concurrency mode and conflict retries; validated here.</param>
    public static ISagaRegistrationConfigurator<TSaga> PostgresRepository<TSaga>(this ISagaRegistrationConfigurator<TSaga> configurator,
        Action<PostgresSagaRepositoryOptions> configure)
        where TSaga : class, ISaga
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new PostgresSagaRepositoryOptions();
        configure(options);
        options.Validate();
        var dbContext = options.DbContext
            ?? throw new ArgumentException($"PostgresRepository for {typeof(TSaga).Name}: call o.UseDbContext<TDbContext>() to name the DbContext that maps the saga", nameof(configure));
        configurator.Repository(services => services.AddPostgresSagaRepository<TSaga>(options, dbContext));
        return configurator;
    }

    /// <summary>
    /// Registers the repository seams for <typeparamref name="TSaga"/> in <paramref name="services"/>, using the scoped
    /// DbContext <paramref name="dbContext"/> returns. Prefer <c>PostgresRepository&lt;TDbContext&gt;()</c> on the saga's registration.
    /// </summary>
    public static IServiceCollection AddPostgresSagaRepository<TSaga>(this IServiceCollection services, PostgresSagaRepositoryOptions options,
        Func<IServiceProvider, DbContext> dbContext)
        where TSaga : class, ISaga
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dbContext);
        options.Validate();

        PostgresSagaRepositoryContextFactory<TSaga> Create(IServiceProvider provider) =>
            new(dbContext(provider), options, provider.GetService<ILoggerFactory>()?.CreateLogger("Integration.Sagas.Postgres"));

        services.RegisterLoadSagaRepository<TSaga, PostgresSagaRepositoryContextFactory<TSaga>>();
        services.RegisterQuerySagaRepository<TSaga, PostgresSagaRepositoryContextFactory<TSaga>>();
        services.RegisterSagaRepository<TSaga, DbContext, SagaConsumeContextFactory<DbContext, TSaga>, PostgresSagaRepositoryContextFactory<TSaga>>();

        // MassTransit's helpers register the factories by type; ours needs the DbContext and options, so replace them.
        services.Replace(ServiceDescriptor.Scoped<ISagaRepositoryContextFactory<TSaga>>(Create));
        services.Replace(ServiceDescriptor.Scoped<IQuerySagaRepositoryContextFactory<TSaga>>(Create));
        services.Replace(ServiceDescriptor.Scoped<ILoadSagaRepositoryContextFactory<TSaga>>(Create));
        return services;
    }
}

/// <summary>
/// Uses the PostgreSQL repository for sagas registered without a repository of their own (e.g. <c>AddSagaStateMachines(assembly)</c>):
/// <c>x.SetSagaRepositoryProvider(new PostgresSagaRepositoryRegistrationProvider(o =&gt; o.UseDbContext&lt;AppDbContext&gt;()))</c>.
/// </summary>
/// <param name="configure">The DbContext (<c>o.UseDbContext&lt;T&gt;()</c>), concurrency mode and conflict retries.</param>
public sealed class PostgresSagaRepositoryRegistrationProvider(Action<PostgresSagaRepositoryOptions> configure) : ISagaRepositoryRegistrationProvider
{
    /// <inheritdoc />
    public void Configure<TSaga>(ISagaRegistrationConfigurator<TSaga> configurator)
        where TSaga : class, ISaga =>
        configurator.PostgresRepository(configure);
}

/// <summary>
/// The repository without dependency injection, for console programs and benchmarks:
/// <c>e.StateMachineSaga(machine, PostgresSagaRepository.Create&lt;OrderState&gt;(() =&gt; new AppDbContext(...), options))</c>.
/// </summary>
public static class PostgresSagaRepository
{
    /// <summary>A repository that creates a DbContext with <paramref name="createDbContext"/> for each message and disposes it afterwards.</summary>
    public static ISagaRepository<TSaga> Create<TSaga>(Func<DbContext> createDbContext, PostgresSagaRepositoryOptions? options = null, ILoggerFactory? loggerFactory = null)
        where TSaga : class, ISaga
    {
        ArgumentNullException.ThrowIfNull(createDbContext);
        options ??= new PostgresSagaRepositoryOptions();
        options.Validate();
        var factory = new PerMessageFactory<TSaga>(createDbContext, options, loggerFactory?.CreateLogger("Integration.Sagas.Postgres"));
        return new SagaRepository<TSaga>(factory, factory, factory);
    }

    sealed class PerMessageFactory<TSaga>(Func<DbContext> createDbContext, PostgresSagaRepositoryOptions options, ILogger? logger) :
        ISagaRepositoryContextFactory<TSaga>,
        IQuerySagaRepositoryContextFactory<TSaga>,
        ILoadSagaRepositoryContextFactory<TSaga>
        where TSaga : class, ISaga
    {
        public void Probe(ProbeContext context)
        {
            context.Add("persistence", "postgresql");
            context.Add("concurrencyMode", options.ConcurrencyMode.ToString());
        }

        public async Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next)
            where T : class
        {
            await using var db = createDbContext();
            await new PostgresSagaRepositoryContextFactory<TSaga>(db, options, logger).Send(context, next).ConfigureAwait(false);
        }

        public async Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
            where T : class
        {
            await using var db = createDbContext();
            await new PostgresSagaRepositoryContextFactory<TSaga>(db, options, logger).SendQuery(context, query, next).ConfigureAwait(false);
        }

        public async Task<T> Execute<T>(Func<LoadSagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
            where T : class
        {
            await using var db = createDbContext();
            return await new PostgresSagaRepositoryContextFactory<TSaga>(db, options, logger).Execute(asyncMethod, cancellationToken).ConfigureAwait(false);
        }

        public async Task<T> Execute<T>(Func<QuerySagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
            where T : class
        {
            await using var db = createDbContext();
            return await new PostgresSagaRepositoryContextFactory<TSaga>(db, options, logger).Execute(asyncMethod, cancellationToken).ConfigureAwait(false);
        }
    }
}
