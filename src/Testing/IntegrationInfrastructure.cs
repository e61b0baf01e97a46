using System.Net.Http.Headers;
using System.Text;
using Npgsql;
using RabbitMQ.Client;
using Testcontainers.PostgreSql;
using Testcontainers.RabbitMq;

namespace Integration.Testing;

/// <summary>
/// The real RabbitMQ broker and PostgreSQL server the integration tests run against.
/// An already-running service named by an environment variable wins; otherwise Testcontainers starts one.
/// A service that can be reached neither way fails the test that asked for it, loudly: nothing is skipped.
/// </summary>
public sealed class IntegrationInfrastructure : IAsyncDisposable
{
    /// <summary>AMQP URI of the broker, e.g. <c>amqp://guest:guest@localhost:5672/</c>.</summary>
    public const string RabbitMqVariable = "INTEGRATION_RABBITMQ_URI";

    /// <summary>Management API base URI; defaults to the AMQP host on port 15672 with the same credentials.</summary>
    public const string RabbitMqManagementVariable = "INTEGRATION_RABBITMQ_MANAGEMENT_URI";

    /// <summary>Npgsql connection string of a role that may create databases.</summary>
    public const string PostgresVariable = "INTEGRATION_POSTGRES";

    static readonly SemaphoreSlim Gate = new(1, 1);
    static IntegrationInfrastructure? _current;

    readonly List<IAsyncDisposable> _containers;

    IntegrationInfrastructure(Uri rabbitMqUri, Uri managementUri, string postgres, List<IAsyncDisposable> containers)
    {
        RabbitMqUri = rabbitMqUri;
        ManagementUri = managementUri;
        PostgresConnectionString = postgres;
        _containers = containers;
        var user = Uri.UnescapeDataString(rabbitMqUri.UserInfo.Split(':')[0]);
        var password = Uri.UnescapeDataString(rabbitMqUri.UserInfo.Split(':').ElementAtOrDefault(1) ?? "");
        RabbitMqUser = user.Length == 0 ? "guest" : user;
        RabbitMqPassword = user.Length == 0 ? "guest" : password;
    }

    /// <summary>AMQP URI of the broker (its default virtual host).</summary>
    public Uri RabbitMqUri { get; }

    /// <summary>Base URI of the broker's management API.</summary>
    public Uri ManagementUri { get; }

    /// <summary>The broker user (from the URI; <c>guest</c> when it names none).</summary>
    public string RabbitMqUser { get; }

    /// <summary>The broker user's password.</summary>
    public string RabbitMqPassword { get; }

    /// <summary>Connection string of a PostgreSQL role that may create and drop databases.</summary>
    public string PostgresConnectionString { get; }

    /// <summary>The shared infrastructure of this test run, started on first use.</summary>
    public static async Task<IntegrationInfrastructure> GetAsync()
    {
        if (_current is not null)
            return _current;

        await Gate.WaitAsync().ConfigureAwait(false);
        try
        {
            return _current ??= await StartAsync().ConfigureAwait(false);
        }
        finally
        {
            Gate.Release();
        }
    }

    /// <summary>Stops containers this run started (services from environment variables are left running).</summary>
    public static async Task ShutdownAsync()
    {
        var current = Interlocked.Exchange(ref _current, null);
        if (current is not null)
            await current.DisposeAsync().ConfigureAwait(false);
    }

    static async Task<IntegrationInfrastructure> StartAsync()
    {
        var containers = new List<IAsyncDisposable>();
        var rabbitText = Environment.GetEnvironmentVariable(RabbitMqVariable);
        var postgres = Environment.GetEnvironmentVariable(PostgresVariable);

        Uri rabbit;
        Uri management;
        if (!string.IsNullOrWhiteSpace(rabbitText))
        {
            if (!Uri.TryCreate(rabbitText, UriKind.Absolute, out rabbit!) || (rabbit.Scheme != "amqp" && rabbit.Scheme != "amqps"))
                throw new InvalidOperationException($"{RabbitMqVariable}='{rabbitText}' is not an amqp:// URI.");
            var managementText = Environment.GetEnvironmentVariable(RabbitMqManagementVariable);
            management = !string.IsNullOrWhiteSpace(managementText)
                ? new Uri(managementText)
                : new UriBuilder("http", rabbit.Host, 15672).Uri;
        }
        else
        {
            var container = await StartContainer(() => new RabbitMqBuilder("rabbitmq:3.13-management")
                .WithPortBinding(15672, true)
                .Build(), "RabbitMQ", RabbitMqVariable).ConfigureAwait(false);
            containers.Add(container);
            rabbit = new Uri(container.GetConnectionString());
            management = new UriBuilder("http", container.Hostname, container.GetMappedPublicPort(15672)).Uri;
        }

        if (string.IsNullOrWhiteSpace(postgres))
        {
            var container = await StartContainer(() => new PostgreSqlBuilder("postgres:16-alpine").Build(), "PostgreSQL", PostgresVariable)
                .ConfigureAwait(false);
            containers.Add(container);
            postgres = container.GetConnectionString();
        }

        var infrastructure = new IntegrationInfrastructure(rabbit, management, postgres, containers);
        await infrastructure.CheckReachableAsync().ConfigureAwait(false);
        return infrastructure;
    }

    static async Task<TContainer> StartContainer<TContainer>(Func<TContainer> build, string service, string variable)
        where TContainer : DotNet.Testcontainers.Containers.IContainer
    {
        try
        {
            var container = build();
            await container.StartAsync().ConfigureAwait(false);
            return container;
        }
        catch (Exception exception)
        {
            throw new InvalidOperationException(
                $"{service} is required by the integration tests: set {variable} to a running {service}, " +
                $"or make a Docker engine available for Testcontainers. ./test.sh starts local services itself. " +
                $"Testcontainers said: {exception.Message}", exception);
        }
    }

    async Task CheckReachableAsync()
    {
        try
        {
            var factory = new ConnectionFactory { Uri = RabbitMqUri };
            await using var connection = await factory.CreateConnectionAsync("integration-tests-probe").ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            throw new InvalidOperationException($"RabbitMQ at {Redact(RabbitMqUri)} ({RabbitMqVariable}) is not reachable: {exception.Message}", exception);
        }

        try
        {
            using var response = await ManagementRequest(HttpMethod.Get, "api/overview").ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
        }
        catch (Exception exception)
        {
            throw new InvalidOperationException(
                $"The RabbitMQ management API at {ManagementUri} ({RabbitMqManagementVariable}) is not reachable; " +
                $"tests create a virtual host each through it (rabbitmq-plugins enable rabbitmq_management): {exception.Message}", exception);
        }

        try
        {
            await using var connection = new NpgsqlConnection(PostgresConnectionString);
            await connection.OpenAsync().ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            throw new InvalidOperationException($"PostgreSQL ({PostgresVariable}) is not reachable: {exception.Message}", exception);
        }
    }

    /// <summary>Creates a virtual host of its own for one test; disposing it deletes the vhost with everything in it.</summary>
    public async Task<TestBroker> CreateVirtualHostAsync(string? prefix = null)
    {
        var vhost = $"{prefix ?? "it"}-{Guid.NewGuid():N}"[..Math.Min(40, (prefix ?? "it").Length + 33)];
        var escaped = Uri.EscapeDataString(vhost);
        using (var created = await ManagementRequest(HttpMethod.Put, $"api/vhosts/{escaped}").ConfigureAwait(false))
            created.EnsureSuccessStatusCode();
        try
        {
            using var granted = await ManagementRequest(HttpMethod.Put, $"api/permissions/{escaped}/{Uri.EscapeDataString(RabbitMqUser)}",
                """{"configure":".*","write":".*","read":".*"}""").ConfigureAwait(false);
            granted.EnsureSuccessStatusCode();
        }
        catch
        {
            await DeleteVirtualHostAsync(vhost).ConfigureAwait(false);
            throw;
        }

        _vhosts.TryAdd(vhost, 0);
        return new TestBroker(this, vhost);
    }

    /// <summary>Creates an empty database of its own for one test; disposing it drops the database.</summary>
    public async Task<TestDatabase> CreateDatabaseAsync(string? prefix = null)
    {
        var name = $"{prefix ?? "it"}_{Guid.NewGuid():N}".ToLowerInvariant();
        await using var connection = new NpgsqlConnection(PostgresConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using (var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection))
            await command.ExecuteNonQueryAsync().ConfigureAwait(false);
        var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionString) { Database = name };
        _databases.TryAdd(name, 0);
        return new TestDatabase(this, name, builder.ConnectionString);
    }

    internal async Task DropDatabaseAsync(string name)
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(PostgresConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync().ConfigureAwait(false);
        _databases.TryRemove(name, out _);
    }

    internal async Task DeleteVirtualHostAsync(string vhost)
    {
        using var response = await ManagementRequest(HttpMethod.Delete, $"api/vhosts/{Uri.EscapeDataString(vhost)}").ConfigureAwait(false);
        _vhosts.TryRemove(vhost, out _);
    }

    /// <summary>Calls the RabbitMQ management API with the broker's credentials.</summary>
    public async Task<HttpResponseMessage> ManagementRequest(HttpMethod method, string path, string? json = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(ManagementUri, path));
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{RabbitMqUser}:{RabbitMqPassword}")));
        if (json is not null)
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        return await Http.SendAsync(request).ConfigureAwait(false);
    }

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    static string Redact(Uri uri) => new UriBuilder(uri) { Password = uri.UserInfo.Contains(':') ? "***" : "" }.Uri.ToString();

    /// <summary>
    /// Removes the virtual hosts and databases a test created and did not dispose (a spec that failed half-way, a harness
    /// that threw while starting), then stops the containers this instance started.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (!_vhosts.IsEmpty || !_databases.IsEmpty)
            Console.Error.WriteLine($"[integration] removing {_vhosts.Count} virtual host(s) and {_databases.Count} database(s) the tests did not dispose");
        foreach (var vhost in _vhosts.Keys)
            await IgnoreFailure(DeleteVirtualHostAsync(vhost)).ConfigureAwait(false);
        foreach (var database in _databases.Keys)
            await IgnoreFailure(DropDatabaseAsync(database)).ConfigureAwait(false);
        foreach (var container in _containers)
            await container.DisposeAsync().ConfigureAwait(false);
    }

    readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _vhosts = new(StringComparer.Ordinal);
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _databases = new(StringComparer.Ordinal);

    static async Task IgnoreFailure(Task cleanup)
    {
        try
        {
            await cleanup.ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is HttpRequestException or NpgsqlException or TaskCanceledException)
        {
            // The services may already be gone at the end of a run: nothing left to clean.
        }
    }
}
