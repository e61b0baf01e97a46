using Integration.Outbox;
using Integration.Sagas.Postgres;
using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Integration.Sagas.Tests.Postgres;

/// <summary>
/// The counter saga on a vhost and database of its own, on the PostgreSQL repository as the spec configures it, with
/// every command the repository sends recorded (<see cref="RoundTrips"/>): the fixture the repository specs share.
/// </summary>
sealed class CounterSagaBus : IAsyncDisposable
{
    readonly TestBroker _broker;
    readonly TestDatabase _database;

    readonly List<IHostedService> _relays;

    CounterSagaBus(TestBroker broker, TestDatabase database, ServiceProvider provider, ITestHarness harness, RoundTrips roundTrips, List<IHostedService> relays)
    {
        (_broker, _database, Provider, Harness, RoundTrips, _relays) = (broker, database, provider, harness, roundTrips, relays);
    }

    public ServiceProvider Provider { get; }
    public ITestHarness Harness { get; }
    public RoundTrips RoundTrips { get; }

    /// <param name="name">The vhost's prefix (the database's, with '_' for '-').</param>
    /// <param name="concurrentMessageLimit">The saga endpoint's.</param>
    /// <param name="repository">The repository's options.</param>
    /// <param name="prefetch">The bus's prefetch; MassTransit's default when null.</param>
    /// <param name="bus">More registrations on the bus (a handler the spec observes).</param>
    /// <param name="created">Runs once the saga's tables exist (tables of the spec's own).</param>
    /// <param name="outbox">The transactional outbox on the saga's DbContext, with its relay (started with the bus), configured so.</param>
    public static async Task<CounterSagaBus> StartAsync(string name, int concurrentMessageLimit, Action<PostgresSagaRepositoryOptions> repository,
        int? prefetch = null, Action<IBusRegistrationConfigurator>? bus = null, Func<CounterDbContext, Task>? created = null,
        Action<OutboxOptions>? outbox = null)
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        var broker = await infrastructure.CreateVirtualHostAsync(name);
        var database = await infrastructure.CreateDatabaseAsync(name.Replace('-', '_'));
        var roundTrips = new RoundTrips();
        var services = new ServiceCollection();
        if (outbox is not null)
            services.AddLogging()
                .AddSingleton<Microsoft.Extensions.Configuration.IConfiguration>(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build())
                .AddIntegrationOutbox<CounterDbContext>(outbox);
        var provider = services
            .AddDbContext<CounterDbContext>(o => o.UseNpgsql(database.ConnectionString).AddInterceptors(roundTrips))
            .AddMassTransitTestHarness(x =>
            {
                x.AddSagaStateMachine<CounterMachine, CounterState>()
                    .Endpoint(e => e.ConcurrentMessageLimit = concurrentMessageLimit)
                    .PostgresRepository<CounterDbContext>(repository);
                bus?.Invoke(x);
                x.UsingRabbitMq((context, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    if (prefetch is { } count)
                        cfg.PrefetchCount = count;
                    cfg.ConfigureEndpoints(context);
                });
            })
            .BuildServiceProvider(true);
        await using (var scope = provider.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
            await db.Database.EnsureCreatedAsync();
            if (created is not null)
                await created(db);
        }

        var harness = provider.GetRequiredService<ITestHarness>();
        harness.TestTimeout = TimeSpan.FromSeconds(60);
        await harness.Start();
        // No generic host here: the outbox's relay (a hosted service) is started by hand, after the bus it sends through.
        var relays = provider.GetServices<IHostedService>().Where(s => s.GetType().Assembly == typeof(OutboxOptions).Assembly).ToList();
        foreach (var relay in relays)
            await relay.StartAsync(CancellationToken.None);
        return new CounterSagaBus(broker, database, provider, harness, roundTrips, relays);
    }

    /// <summary>The stored instance, read past the repository (tagged, so <see cref="RoundTrips"/> leaves it out).</summary>
    public async Task<CounterState?> Stored(Guid id)
    {
        await using var scope = Provider.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<CounterDbContext>().Set<CounterState>().AsNoTracking().TagWith(RoundTrips.SpecTag)
            .SingleOrDefaultAsync(s => s.CorrelationId == id);
    }

    /// <summary>Every stored instance's count.</summary>
    public async Task<Dictionary<Guid, int>> Counts()
    {
        await using var scope = Provider.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<CounterDbContext>().Set<CounterState>().AsNoTracking().TagWith(RoundTrips.SpecTag)
            .ToDictionaryAsync(s => s.CorrelationId, s => s.Count);
    }

    /// <summary>Polls the stored instance until <paramref name="condition"/> holds (30 s at most).</summary>
    public Task<bool> Eventually(Func<CounterState?, bool> condition, Guid id, TimeSpan poll) =>
        Integration.Testing.Eventually.TrueAsync(async () => condition(await Stored(id)), TimeSpan.FromSeconds(30), poll);

    public async ValueTask DisposeAsync()
    {
        foreach (var relay in _relays)
            await relay.StopAsync(CancellationToken.None);
        await Harness.Stop();
        await Provider.DisposeAsync();
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }
}
