using MassTransit;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Testing;

/// <summary>
/// Your own host (its <c>Program</c>) started in-process on a virtual host and a database of its own, with the broker and
/// database mapped to <c>Integration:RabbitMq:*</c> and <c>Integration:Postgres:ConnectionString</c>, ready once
/// <c>/health/ready</c> answers. Disposing stops the host and deletes the virtual host and the database; a host that fails to
/// start cleans up the same way before the error reaches the test.
/// </summary>
/// <typeparam name="TProgram">Any type of the host's entry assembly, usually its <c>Program</c> (<c>public partial class Program;</c>).</typeparam>
public sealed class IntegrationTestHost<TProgram> : IAsyncDisposable
    where TProgram : class
{
    readonly HostFactory _factory;
    readonly IReadOnlyList<Type> _dbContextTypes;
    bool _disposed;

    IntegrationTestHost(TestBroker broker, TestDatabase database, HostFactory factory, HttpClient client, IReadOnlyDictionary<string, string?> settings)
    {
        Broker = broker;
        Database = database;
        _factory = factory;
        Client = client;
        Settings = settings;
        _dbContextTypes = factory.DbContextTypes;
        Timeouts = new DurableTimeouts(factory.Services);
        Outbox = new OutboxHarness(factory.Services, _dbContextTypes);
    }

    /// <summary>The host's own virtual host.</summary>
    public TestBroker Broker { get; }

    /// <summary>The host's own database.</summary>
    public TestDatabase Database { get; }

    /// <summary>The host's container.</summary>
    public IServiceProvider Services => _factory.Services;

    /// <summary>A client for the host's HTTP endpoints.</summary>
    public HttpClient Client { get; }

    /// <summary>The configuration the host was started with on top of its own (broker, database, <see cref="IntegrationTestHostOptions.Settings"/>).</summary>
    public IReadOnlyDictionary<string, string?> Settings { get; }

    /// <summary>The durable scheduler's pending timeouts: list them, fire them now.</summary>
    public DurableTimeouts Timeouts { get; }

    /// <summary>The transactional outbox of the host's database: await delivery of everything committed so far.</summary>
    public OutboxHarness Outbox { get; }

    /// <summary>Reads and awaits instances of <typeparamref name="TSaga"/> from the host's DbContext that maps it.</summary>
    public SagaHarness<TSaga> Saga<TSaga>()
        where TSaga : class, SagaStateMachineInstance => new(Services, _dbContextTypes);

    /// <summary>Another client for the host's HTTP endpoints.</summary>
    public HttpClient CreateClient() => _factory.CreateClient();

    /// <summary>Starts the host on a fresh virtual host and database and waits until it is ready.</summary>
    public static async Task<IntegrationTestHost<TProgram>> StartAsync(Action<IntegrationTestHostOptions>? configure = null,
        CancellationToken cancellationToken = default)
    {
        var options = new IntegrationTestHostOptions();
        configure?.Invoke(options);
        var infrastructure = options.Infrastructure ?? await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
        var prefix = Prefix(options.NamePrefix);

        TestBroker? broker = null;
        TestDatabase? database = null;
        HostFactory? factory = null;
        HttpClient? client = null;
        try
        {
            broker = await infrastructure.CreateVirtualHostAsync(prefix).ConfigureAwait(false);
            database = await infrastructure.CreateDatabaseAsync(prefix).ConfigureAwait(false);
            var settings = new Dictionary<string, string?>(broker.HostSettings(), StringComparer.OrdinalIgnoreCase)
            {
                ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            };
            foreach (var (key, value) in options.Settings)
                settings[key] = value;

            factory = new HostFactory(settings, options);
            client = factory.CreateClient();
            if (options.ReadinessPath is { } path)
                await WaitUntilReady(client, path, options.StartTimeout, cancellationToken).ConfigureAwait(false);
            return new IntegrationTestHost<TProgram>(broker, database, factory, client, settings);
        }
        catch
        {
            client?.Dispose();
            await Quietly(factory is null ? null : factory.DisposeAsync).ConfigureAwait(false);
            await Quietly(database is null ? null : database.DisposeAsync).ConfigureAwait(false);
            await Quietly(broker is null ? null : broker.DisposeAsync).ConfigureAwait(false);
            throw;
        }
    }

    static async Task WaitUntilReady(HttpClient client, string path, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var last = "no answer yet";
        await Observe.UntilAsync($"{typeof(TProgram).Assembly.GetName().Name} answering 2xx on {path}", async token =>
        {
            using var response = await client.GetAsync(new Uri(path, UriKind.Relative), token).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(token).ConfigureAwait(false);
            last = $"{(int)response.StatusCode} {response.StatusCode}: {(body.Length > 2000 ? body[..2000] : body)}";
            return response.IsSuccessStatusCode;
        }, ready => ready, () => last, timeout, cancellationToken).ConfigureAwait(false);
    }

    static string Prefix(string? requested)
    {
        var letters = new string((requested ?? "host").Where(char.IsAsciiLetterOrDigit).Select(char.ToLowerInvariant).Take(12).ToArray());
        return letters.Length == 0 ? "host" : letters;
    }

    static async Task Quietly(Func<ValueTask>? dispose)
    {
        if (dispose is null)
            return;
        try
        {
            await dispose().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The start failure is what the test needs to see; cleanup is best effort.
        }
    }

    /// <summary>Stops the host, then deletes its virtual host and drops its database.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        Client.Dispose();
        try
        {
            await _factory.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            await Quietly(Database.DisposeAsync).ConfigureAwait(false);
            await Broker.DisposeAsync().ConfigureAwait(false);
        }
    }

    sealed class HostFactory(IReadOnlyDictionary<string, string?> settings, IntegrationTestHostOptions options) : WebApplicationFactory<TProgram>
    {
        readonly List<Type> _dbContextTypes = [];

        public IReadOnlyList<Type> DbContextTypes => _dbContextTypes;

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.UseEnvironment(options.Environment);
            foreach (var (key, value) in settings)
                builder.UseSetting(key, value);
            builder.ConfigureAppConfiguration(configuration => configuration.AddInMemoryCollection(settings));
            builder.ConfigureTestServices(services =>
            {
                foreach (var descriptor in services)
                {
                    if (descriptor.ServiceType != typeof(DbContext) && typeof(DbContext).IsAssignableFrom(descriptor.ServiceType)
                                                                   && !_dbContextTypes.Contains(descriptor.ServiceType))
                        _dbContextTypes.Add(descriptor.ServiceType);
                }

                options.ConfigureServices?.Invoke(services);
            });
        }
    }
}
