using MassTransit;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Testing;

/// <summary>
/// A host built from a service collection in the test (no <c>Program</c>, no HTTP): the test registers its DbContext,
/// consumers, sagas and the framework's pieces, the kit gives it a virtual host and a database of its own (or shared ones,
/// for several hosts on one broker and database), creates every registered DbContext's tables, starts it, and hands it
/// back with the same outbox, saga and timeout harnesses as <see cref="IntegrationTestHost{TProgram}"/>. Disposing stops the
/// host, then deletes the virtual host and drops the database it created (never shared ones); a host that fails to start
/// cleans up the same way before the error reaches the test.
/// </summary>
/// <example>
/// <code>
/// await using var host = await IntegrationServiceHost.StartAsync(h =>
/// {
///     h.Services.AddDbContext&lt;ShopDbContext&gt;(o => o.UseNpgsql(h.Database.ConnectionString));
///     h.Services.AddIntegrationOutbox&lt;ShopDbContext&gt;();
///     h.Services.AddMassTransit(x => x.UsingRabbitMq((context, cfg) => { h.Broker.ConfigureHost(cfg); cfg.ConfigureEndpoints(context); }));
/// });
/// </code>
/// </example>
public sealed class IntegrationServiceHost : IAsyncDisposable
{
    readonly IHost _host;
    readonly bool _ownsBroker;
    readonly bool _ownsDatabase;
    int _disposed;

    IntegrationServiceHost(IHost host, TestBroker broker, TestDatabase database, bool ownsBroker, bool ownsDatabase,
        IReadOnlyList<Type> dbContextTypes, IReadOnlyDictionary<string, string?> settings)
    {
        _host = host;
        Broker = broker;
        Database = database;
        _ownsBroker = ownsBroker;
        _ownsDatabase = ownsDatabase;
        DbContextTypes = dbContextTypes;
        Settings = settings;
        Timeouts = new DurableTimeouts(host.Services);
        Outbox = new OutboxHarness(host.Services, dbContextTypes);
    }

    /// <summary>The host's virtual host (its own, or the one given in <see cref="IntegrationServiceHostOptions.Broker"/>).</summary>
    public TestBroker Broker { get; }

    /// <summary>The host's database (its own, or the one given in <see cref="IntegrationServiceHostOptions.Database"/>).</summary>
    public TestDatabase Database { get; }

    /// <summary>The host's container.</summary>
    public IServiceProvider Services => _host.Services;

    /// <summary>The DbContext types registered in the container.</summary>
    public IReadOnlyList<Type> DbContextTypes { get; }

    /// <summary>The configuration the host was built with (broker, database, <see cref="IntegrationServiceHostOptions.Settings"/>).</summary>
    public IReadOnlyDictionary<string, string?> Settings { get; }

    /// <summary>The durable scheduler's pending timeouts: list them, fire them now.</summary>
    public DurableTimeouts Timeouts { get; }

    /// <summary>The transactional outbox of the host's database: await delivery of everything committed so far.</summary>
    public OutboxHarness Outbox { get; }

    /// <summary>Reads and awaits instances of <typeparamref name="TSaga"/> from the host's DbContext that maps it.</summary>
    public SagaHarness<TSaga> Saga<TSaga>()
        where TSaga : class, SagaStateMachineInstance => new(Services, DbContextTypes);

    /// <summary>Builds, prepares and starts a host from the registrations <paramref name="configure"/> makes.</summary>
    /// <param name="configure">Registers the host's services; <see cref="IntegrationServiceHostBuilder.Broker"/> and <see cref="IntegrationServiceHostBuilder.Database"/> are ready to use.</param>
    /// <param name="options">Where the host runs and how it is prepared.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static async Task<IntegrationServiceHost> StartAsync(Action<IntegrationServiceHostBuilder> configure,
        Action<IntegrationServiceHostOptions>? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var settings = new IntegrationServiceHostOptions();
        options?.Invoke(settings);
        var prefix = Prefix(settings.NamePrefix);

        TestBroker? broker = settings.Broker;
        TestDatabase? database = settings.Database;
        var ownsBroker = broker is null;
        var ownsDatabase = database is null;
        IHost? host = null;
        try
        {
            if (broker is null || database is null)
            {
                var infrastructure = settings.Infrastructure ?? await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
                broker ??= await infrastructure.CreateVirtualHostAsync(prefix).ConfigureAwait(false);
                database ??= await infrastructure.CreateDatabaseAsync(prefix).ConfigureAwait(false);
            }

            var configuration = new Dictionary<string, string?>(broker.HostSettings(), StringComparer.OrdinalIgnoreCase)
            {
                ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            };
            foreach (var (key, value) in settings.Settings)
                configuration[key] = value;

            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
            {
                EnvironmentName = settings.Environment,
                DisableDefaults = true,
            });
            builder.Configuration.AddInMemoryCollection(configuration);
            if (settings.Logging)
                builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            // The host is handed to the test once every receive endpoint is bound: a message published right after start
            // reaches its consumers instead of an exchange with no queue bound yet.
            builder.Services.Configure<MassTransitHostOptions>(o =>
            {
                o.WaitUntilStarted = true;
                o.StartTimeout = settings.StartTimeout;
            });
            configure(new IntegrationServiceHostBuilder(builder, broker, database));

            var dbContextTypes = builder.Services
                .Select(d => d.ServiceType)
                .Where(t => t != typeof(DbContext) && typeof(DbContext).IsAssignableFrom(t))
                .Distinct()
                .ToList();
            host = builder.Build();
            if (settings.CreateTables)
            {
                foreach (var type in dbContextTypes)
                {
                    await using var scope = host.Services.CreateAsyncScope();
                    var db = (DbContext)scope.ServiceProvider.GetRequiredService(type);
                    await CreateTablesAsync(db, cancellationToken).ConfigureAwait(false);
                }
            }

            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                timeout.CancelAfter(settings.StartTimeout);
                try
                {
                    await host.StartAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new TimeoutException($"The host did not start within {settings.StartTimeout} (IntegrationServiceHostOptions.StartTimeout) on virtual host '{broker.VirtualHost}' and database '{database.Name}'.");
                }
            }

            return new IntegrationServiceHost(host, broker, database, ownsBroker, ownsDatabase, dbContextTypes, configuration);
        }
        catch
        {
            if (host is not null)
            {
                await Quietly(async () => await host.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false)).ConfigureAwait(false);
                host.Dispose();
            }

            if (ownsDatabase && database is not null)
                await Quietly(database.DisposeAsync).ConfigureAwait(false);
            if (ownsBroker && broker is not null)
                await Quietly(broker.DisposeAsync).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Creates the DbContext's tables in its database. In a database that has tables already, creates this model's tables
    /// when none of them exists yet, and leaves them as they are when they do (a second host of the same model on a shared
    /// database); a model that overlaps another only in part is not merged — give such hosts a database each.
    /// </summary>
    static async Task CreateTablesAsync(DbContext db, CancellationToken cancellationToken)
    {
        if (await db.Database.EnsureCreatedAsync(cancellationToken).ConfigureAwait(false))
            return;
        var creator = db.GetService<Microsoft.EntityFrameworkCore.Storage.IRelationalDatabaseCreator>();
        try
        {
            await creator.CreateTablesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Npgsql.PostgresException e) when (e.SqlState is Npgsql.PostgresErrorCodes.DuplicateTable or Npgsql.PostgresErrorCodes.DuplicateSchema
                                                     or Npgsql.PostgresErrorCodes.DuplicateObject)
        {
            // Tables of this model exist already: another host on the same database created them.
        }
    }

    static string Prefix(string? requested)
    {
        var letters = new string((requested ?? "svc").Where(char.IsAsciiLetterOrDigit).Select(char.ToLowerInvariant).Take(12).ToArray());
        return letters.Length == 0 ? "svc" : letters;
    }

    static async Task Quietly(Func<ValueTask> dispose)
    {
        try
        {
            await dispose().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The start failure is what the test needs to see; cleanup is best effort.
        }
    }

    /// <summary>Stops the host; then deletes the virtual host and drops the database if the host created them.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        try
        {
            await _host.StopAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        finally
        {
            _host.Dispose();
            if (_ownsDatabase)
                await Quietly(Database.DisposeAsync).ConfigureAwait(false);
            if (_ownsBroker)
                await Broker.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>What <see cref="IntegrationServiceHost.StartAsync"/> hands to the test's registrations.</summary>
public sealed class IntegrationServiceHostBuilder
{
    readonly HostApplicationBuilder _builder;

    internal IntegrationServiceHostBuilder(HostApplicationBuilder builder, TestBroker broker, TestDatabase database)
    {
        _builder = builder;
        Broker = broker;
        Database = database;
    }

    /// <summary>The services of the host.</summary>
    public IServiceCollection Services => _builder.Services;

    /// <summary>The host's configuration: <c>Integration:RabbitMq:*</c>, <c>Integration:Postgres:ConnectionString</c> and the options' settings.</summary>
    public IConfigurationManager Configuration => _builder.Configuration;

    /// <summary>The host's logging.</summary>
    public ILoggingBuilder Logging => _builder.Logging;

    /// <summary>The whole builder, for extension methods on <see cref="IHostApplicationBuilder"/> (e.g. <c>AddIntegrationDefaults</c>).</summary>
    public IHostApplicationBuilder Host => _builder;

    /// <summary>The virtual host the host runs on: <c>Broker.ConfigureHost(cfg)</c> inside <c>UsingRabbitMq</c>.</summary>
    public TestBroker Broker { get; }

    /// <summary>The database the host runs on: <c>UseNpgsql(Database.ConnectionString)</c>.</summary>
    public TestDatabase Database { get; }
}

/// <summary>How <see cref="IntegrationServiceHost.StartAsync"/> starts a host.</summary>
public sealed class IntegrationServiceHostOptions
{
    /// <summary>Extra configuration, applied after the broker and database settings.</summary>
    public IDictionary<string, string?> Settings { get; } = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);

    /// <summary>A virtual host to share with other hosts of the test (not deleted with this host); a new one by default.</summary>
    public TestBroker? Broker { get; set; }

    /// <summary>A database to share with other hosts of the test (not dropped with this host); a new one by default.</summary>
    public TestDatabase? Database { get; set; }

    /// <summary>Creates every registered DbContext's tables before start (true by default); false when the test migrates itself.</summary>
    public bool CreateTables { get; set; } = true;

    /// <summary>Logs the host to the console (false by default: the test output stays readable).</summary>
    public bool Logging { get; set; }

    /// <summary>The hosting environment; <c>Testing</c> by default.</summary>
    public string Environment { get; set; } = "Testing";

    /// <summary>How long the host may take to start; 60 seconds by default.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Prefix of the created virtual host's and database's names (letters and digits, at most 12); <c>svc</c> by default.</summary>
    public string? NamePrefix { get; set; }

    /// <summary>The infrastructure to run on; <see cref="IntegrationInfrastructure.GetAsync"/> by default.</summary>
    public IntegrationInfrastructure? Infrastructure { get; set; }
}
