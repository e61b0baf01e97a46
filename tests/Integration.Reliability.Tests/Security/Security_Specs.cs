using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using Integration.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Integration.Reliability.Tests.Support;
using Integration.Testing;
using Npgsql;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Security;

/// <summary>
/// The host as a real process with credentials of its own (a RabbitMQ user and a PostgreSQL role made for this test, with
/// random passwords), logging at Debug: the passwords never appear in what it writes, HTTP bodies over the configured
/// limit get 413, and its PostgreSQL connections are encrypted when the connection string asks for TLS.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class Security_Specs
{
    const int BodyLimit = 4096;

    readonly string _brokerUser = $"u-{Guid.NewGuid():N}"[..14];
    readonly string _brokerPassword = $"Bq{Guid.NewGuid():N}";
    readonly string _databaseRole = $"r_{Guid.NewGuid():N}"[..14];
    readonly string _databasePassword = $"Pg{Guid.NewGuid():N}";
    readonly string _applicationName = $"security-{Guid.NewGuid():N}"[..20];

    IntegrationInfrastructure _infrastructure = null!;
    TestBroker _broker = null!;
    TestDatabase _database = null!;
    HostProcess _host = null!;

    [OneTimeSetUp]
    public async Task StartHostWithCredentialsOfItsOwn()
    {
        _infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await _infrastructure.CreateVirtualHostAsync("security");
        _database = await _infrastructure.CreateDatabaseAsync("security");
        var vhost = Uri.EscapeDataString(_broker.VirtualHost);
        using (var user = await _infrastructure.ManagementRequest(HttpMethod.Put, $"api/users/{_brokerUser}", $$"""{"password":"{{_brokerPassword}}","tags":""}"""))
            user.EnsureSuccessStatusCode();
        using (var permissions = await _infrastructure.ManagementRequest(HttpMethod.Put, $"api/permissions/{vhost}/{_brokerUser}", """{"configure":".*","write":".*","read":".*"}"""))
            permissions.EnsureSuccessStatusCode();
        await using (var connection = new NpgsqlConnection(_infrastructure.PostgresConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE ROLE \"{_databaseRole}\" LOGIN PASSWORD '{_databasePassword}'; ALTER DATABASE \"{_database.Name}\" OWNER TO \"{_databaseRole}\"", connection);
            await create.ExecuteNonQueryAsync();
        }

        var connectionString = new NpgsqlConnectionStringBuilder(_database.ConnectionString)
        {
            Username = _databaseRole,
            Password = _databasePassword,
            SslMode = SslMode.Require, // the local server has ssl=on (a self-signed certificate): encrypted, not verified
            ApplicationName = _applicationName,
        }.ConnectionString;
        _host = await HostProcess.StartAsync("Integration.Host.dll", new Dictionary<string, string?>(_broker.HostSettings())
        {
            ["Integration:RabbitMq:Username"] = _brokerUser,
            ["Integration:RabbitMq:Password"] = _brokerPassword,
            ["Integration:Postgres:ConnectionString"] = connectionString,
            ["Integration:Host:MaxRequestBodyBytes"] = BodyLimit.ToString(CultureInfo.InvariantCulture),
            ["Logging:LogLevel:Default"] = "Debug",
            ["Logging:LogLevel:Microsoft"] = "Debug",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Debug",
            ["Logging:LogLevel:Microsoft.EntityFrameworkCore"] = "Debug",
            ["Logging:LogLevel:MassTransit"] = "Debug",
        });
        Assert.That(await _host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(60)), Is.True, () => $"host never became ready:\n{_host.Output}");
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _host.DisposeAsync();
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
        using var deleted = await _infrastructure.ManagementRequest(HttpMethod.Delete, $"api/users/{_brokerUser}");
        await using var connection = new NpgsqlConnection(_infrastructure.PostgresConnectionString);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP ROLE IF EXISTS \"{_databaseRole}\"", connection);
        await drop.ExecuteNonQueryAsync();
    }

    static object Order(int lines = 1) => new
    {
        orderId = Guid.NewGuid(),
        deviceId = "truck-1",
        region = "north",
        lines = Enumerable.Range(0, lines).Select(i => new { sku = $"PUMP-{i:D40}", quantity = 1 }),
    };

    [Test]
    public async Task When_the_host_runs_with_debug_logging_should_never_write_a_password()
    {
        // Exercise the broker, the database, the outbox and the HTTP pipeline so their debug logs are in the output.
        using var accepted = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), Order());
        Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        await Task.Delay(TimeSpan.FromSeconds(2));

        var output = _host.Output;
        Assert.That(output, Does.Contain(_broker.VirtualHost).Or.Contain("Bus started"), "precondition: the host logged its broker activity");
        Assert.That(output.Length, Is.GreaterThan(10_000), "precondition: debug logging is on");
        Assert.That(output, Does.Not.Contain(_brokerPassword), "the RabbitMQ password was logged");
        Assert.That(output, Does.Not.Contain(_databasePassword), "the PostgreSQL password was logged");
    }

    [Test]
    public async Task When_the_broker_refuses_the_credentials_should_log_the_failure_without_the_password()
    {
        var wrong = $"Wrong{Guid.NewGuid():N}";
        await using var host = await HostProcess.StartAsync("Integration.Host.dll", new Dictionary<string, string?>(_broker.HostSettings())
        {
            ["Integration:RabbitMq:Username"] = _brokerUser,
            ["Integration:RabbitMq:Password"] = wrong,
            ["Integration:Postgres:ConnectionString"] = _database.ConnectionString,
            ["Integration:Postgres:MigrateOnStart"] = "false",
            ["Logging:LogLevel:Default"] = "Debug",
        });

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Output.Contains("ACCESS_REFUSED", StringComparison.Ordinal)
            || host.Output.Contains("authentication", StringComparison.OrdinalIgnoreCase)), TimeSpan.FromSeconds(30)), Is.True,
            () => $"precondition: the refused login is logged:\n{host.Output[^Math.Min(3000, host.Output.Length)..]}");
        Assert.That(host.Output, Does.Not.Contain(wrong), "the refused password was logged");
    }

    [Test]
    public async Task When_an_order_body_is_over_the_configured_limit_should_answer_413_and_store_nothing()
    {
        var big = Order(lines: 100); // about 7 KB of JSON, over the 4 KiB limit
        var json = System.Text.Json.JsonSerializer.Serialize(big);
        Assert.That(Encoding.UTF8.GetByteCount(json), Is.GreaterThan(BodyLimit), "precondition");

        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await _host.Client.PostAsync(new Uri("/api/orders", UriKind.Relative), content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        using var small = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), Order());
        Assert.That(small.StatusCode, Is.EqualTo(HttpStatusCode.Accepted), "a body under the limit is still accepted");
    }

    [Test]
    public async Task When_an_order_is_posted_as_text_should_answer_415()
    {
        using var content = new StringContent(System.Text.Json.JsonSerializer.Serialize(Order()), Encoding.UTF8, "text/plain");
        using var response = await _host.Client.PostAsync(new Uri("/api/orders", UriKind.Relative), content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
    }

    [Test]
    public async Task When_the_connection_string_requires_TLS_should_talk_to_PostgreSQL_encrypted()
    {
        await using var connection = new NpgsqlConnection(_infrastructure.PostgresConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = @name", connection);
        command.Parameters.AddWithValue("name", _applicationName);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();

        Assert.That(reader.GetInt64(1), Is.GreaterThan(0), "precondition: the host holds database connections");
        Assert.That(reader.GetInt64(0), Is.EqualTo(reader.GetInt64(1)), "every connection of the host is encrypted");
    }

    [Test]
    public void When_TLS_is_on_for_RabbitMQ_should_connect_with_TLS_the_server_name_and_the_client_certificate()
    {
        var certificate = Path.GetTempFileName();
        try
        {
            var options = new RabbitMqOptions
            {
                Host = "broker.internal", Port = 5671, Username = "u", Password = "p", UseTls = true, TlsServerName = "rabbit.example.com",
                TlsClientCertificatePath = certificate, TlsClientCertificatePassphrase = "secret",
            };

            var factory = RabbitMqConnections.Factory(options);

            Assert.That(RabbitMqFailures(options), Is.Empty);
            Assert.That(factory.Ssl.Enabled, Is.True);
            Assert.That(factory.Ssl.ServerName, Is.EqualTo("rabbit.example.com"));
            Assert.That(factory.Ssl.CertPath, Is.EqualTo(certificate));
            Assert.That(factory.Ssl.Version, Is.EqualTo(System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13));
            Assert.That(options.EffectiveManagementUri.Scheme, Is.EqualTo("https"));
        }
        finally
        {
            File.Delete(certificate);
        }
    }

    [Test]
    public void When_a_client_certificate_is_configured_without_TLS_or_file_should_refuse_to_start_naming_the_setting()
    {
        var withoutTls = new RabbitMqOptions { Host = "h", Username = "u", Password = "p", TlsClientCertificatePath = "/etc/hosts" };
        var missing = new RabbitMqOptions { Host = "h", Username = "u", Password = "p", UseTls = true, TlsClientCertificatePath = "/nonexistent/client.pfx" };

        Assert.That(string.Join("; ", RabbitMqFailures(withoutTls)), Does.Contain("Integration:RabbitMq:TlsClientCertificatePath").And.Contain("UseTls"));
        Assert.That(string.Join("; ", RabbitMqFailures(missing)), Does.Contain("Integration:RabbitMq:TlsClientCertificatePath").And.Contain("no file"));
    }

    /// <summary>What the host's start-time validation says of <paramref name="options"/> (the same validator AddIntegrationDefaults registers).</summary>
    static IReadOnlyList<string> RabbitMqFailures(RabbitMqOptions options)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Integration:RabbitMq:Host"] = options.Host, ["Integration:RabbitMq:Port"] = options.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Integration:RabbitMq:Username"] = options.Username, ["Integration:RabbitMq:Password"] = options.Password,
            ["Integration:RabbitMq:UseTls"] = options.UseTls ? "true" : "false", ["Integration:RabbitMq:TlsClientCertificatePath"] = options.TlsClientCertificatePath,
            ["Integration:Postgres:ConnectionString"] = "Host=localhost",
        });
        builder.AddIntegrationDefaults<Integration.Host.Persistence.HostDbContext>();
        using var services = builder.Services.BuildServiceProvider();
        try
        {
            _ = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<RabbitMqOptions>>().Value;
            return [];
        }
        catch (Microsoft.Extensions.Options.OptionsValidationException exception)
        {
            return exception.Failures.ToList();
        }
    }
}
