using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Testing;
using Npgsql;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Security;

/// <summary>
/// TLS for real: the sample host as a child process against a RabbitMQ node whose only listener is TLS with
/// <c>verify_peer</c> and <c>fail_if_no_peer_cert</c>, and a PostgreSQL instance that accepts TLS only, reached with
/// <c>sslmode=verify-full</c>; both certificates and the host's client certificate come from a throw-away CA made by
/// <c>scripts/services.sh</c> (<c>integration_tls</c>). The order flow runs end to end over it; a missing client
/// certificate or one from another CA is refused at start, with the reason in the host's readiness answer and log.
/// </summary>
[TestFixture]
[Category("Integration")]
[NonParallelizable]
public sealed class Tls_Specs
{
    readonly string _applicationName = $"tls-{Guid.NewGuid():N}"[..16];

    TlsEnvironment _tls = null!;
    TlsVirtualHost _vhost = null!;
    TlsDatabase _database = null!;
    HostProcess _host = null!;

    [OneTimeSetUp]
    public async Task StartTheHostOverTls()
    {
        _tls = TlsEnvironment.Require(postgres: true);
        _vhost = await _tls.CreateVirtualHostAsync("tls");
        _database = await _tls.CreateDatabaseAsync("tls");
        var settings = _tls.HostSettings(_vhost.Name, _tls.ClientCertificate);
        settings["Integration:Postgres:ConnectionString"] = new NpgsqlConnectionStringBuilder(_database.ConnectionString) { ApplicationName = _applicationName }.ConnectionString;
        _host = await HostProcess.StartAsync("Integration.Host.dll", settings);
        Assert.That(await _host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(90)), Is.True,
            () => $"the host never became ready over TLS:\n{Tail(_host.Output)}");
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (_host is not null)
            await _host.DisposeAsync();
        if (_vhost is not null)
            await _vhost.DisposeAsync();
        if (_database is not null)
            await _database.DisposeAsync();
    }

    [Test]
    public async Task When_the_host_connects_with_its_client_certificate_should_hold_only_TLS_connections_showing_that_certificate()
    {
        JsonElement[] connections = [];
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            using var response = await _tls.ManagementRequest(HttpMethod.Get, $"api/vhosts/{Uri.EscapeDataString(_vhost.Name)}/connections");
            connections = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.EnumerateArray().ToArray();
            return connections.Length > 0 && connections.All(c => c.TryGetProperty("ssl", out _));
        }, TimeSpan.FromSeconds(30)), Is.True, "precondition: the management API lists the host's connections");

        Assert.That(connections.Select(c => c.GetProperty("ssl").GetBoolean()), Is.All.True, "every connection of the host is TLS");
        Assert.That(connections.Select(c => c.GetProperty("peer_cert_subject").GetString()), Is.All.EqualTo("CN=integration-client"),
            "the broker verified the host's client certificate");
        Assert.That(connections.Select(c => c.GetProperty("ssl_protocol").GetString()), Is.All.AnyOf("tlsv1.2", "tlsv1.3"));
    }

    [Test]
    public async Task When_an_order_is_posted_should_complete_every_step_over_TLS()
    {
        var orderId = Guid.NewGuid();
        using var accepted = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId,
            deviceId = "truck-tls",
            region = "north",
            lines = new[] { new { sku = "PUMP-1", quantity = 2 }, new { sku = "HOSE-3", quantity = 5 } },
        });
        Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.Accepted), await accepted.Content.ReadAsStringAsync());

        string? status = null;
        string[] steps = [];
        var completed = await Eventually.TrueAsync(async () =>
        {
            using var response = await _host.Client.GetAsync(new Uri($"/api/orders/{orderId}", UriKind.Relative));
            if (!response.IsSuccessStatusCode)
                return false;
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            status = body.GetProperty("status").GetString();
            steps = body.GetProperty("steps").EnumerateArray().Select(s => s.GetString()!).ToArray();
            return status == "Completed";
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250));

        Assert.That(completed, Is.True, () => $"the order never completed over TLS; last status {status} [{string.Join(", ", steps)}]\n{Tail(_host.Output)}");
        Assert.That(steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "PurchaseOrderCreated", "InventoryUpdated" }));
    }

    [Test]
    public async Task When_the_database_is_reached_with_verify_full_should_hold_only_encrypted_connections()
    {
        await using var connection = new NpgsqlConnection(_tls.Postgres);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.application_name = @name", connection);
        command.Parameters.AddWithValue("name", _applicationName);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();

        Assert.That(reader.GetInt64(1), Is.GreaterThan(0), "precondition: the host holds connections to the TLS instance");
        Assert.That(reader.GetInt64(0), Is.EqualTo(reader.GetInt64(1)), "every connection of the host is encrypted");
        Assert.That(new NpgsqlConnectionStringBuilder(_database.ConnectionString).SslMode, Is.EqualTo(SslMode.VerifyFull));
    }

    [Test]
    public async Task When_the_database_certificate_is_not_from_the_trusted_CA_or_TLS_is_off_should_refuse_the_connection()
    {
        var rogueCa = Path.Combine(Path.GetDirectoryName(_tls.CaCertificate)!, "rogue-ca.pem");
        var untrusted = new NpgsqlConnectionStringBuilder(_tls.Postgres) { RootCertificate = rogueCa, Pooling = false }.ConnectionString;
        var plain = new NpgsqlConnectionStringBuilder(_tls.Postgres) { SslMode = SslMode.Disable, Pooling = false }.ConnectionString;

        var verify = await OpenFailure(untrusted);
        var withoutTls = await OpenFailure(plain);

        Assert.That(verify, Is.Not.Null.And.Message.Contains("certificate").IgnoreCase.Or.InnerException.Not.Null, "verify-full refused a server certificate it cannot chain to the given root");
        Assert.That(withoutTls, Is.InstanceOf<PostgresException>().And.Message.Contains("no encryption"), "the instance accepts TLS connections only");
    }

    [Test]
    public async Task When_the_client_certificate_is_missing_should_refuse_the_connection_at_start_with_the_reason()
    {
        var (ready, refusal) = await StartAndRead(_tls.HostSettings(_vhost.Name, clientCertificate: null), "certificate required");

        Assert.That(ready.status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "a host the broker refuses is not ready");
        Assert.That(ready.body, Does.Contain("Broker unreachable").And.Contain("5691"), "readiness names the broker it cannot reach");
        Assert.That(refusal, Does.Contain("alert certificate required"), "the log says the broker wants a client certificate");
    }

    [Test]
    public async Task When_the_client_certificate_is_from_another_CA_should_refuse_the_connection_at_start_with_the_reason()
    {
        var (ready, refusal) = await StartAndRead(_tls.HostSettings(_vhost.Name, _tls.RogueClientCertificate), "unknown ca");

        Assert.That(ready.status, Is.EqualTo(HttpStatusCode.ServiceUnavailable), "a host the broker refuses is not ready");
        Assert.That(ready.body, Does.Contain("Broker unreachable").And.Contain("5691"), "readiness names the broker it cannot reach");
        Assert.That(refusal, Does.Contain("alert unknown ca"), "the log says the broker does not know the certificate's CA");
    }

    /// <summary>
    /// Starts a host with <paramref name="settings"/> (and the fixture's database), waits until it is not ready and has logged
    /// the TLS alert <paramref name="reason"/>; returns its readiness answer and the first log line with the reason.
    /// </summary>
    async Task<((HttpStatusCode status, string body) ready, string refusal)> StartAndRead(Dictionary<string, string?> settings, string reason)
    {
        settings["Integration:Postgres:ConnectionString"] = _database.ConnectionString;
        settings["Integration:Postgres:MigrateOnStart"] = "false";
        await using var host = await HostProcess.StartAsync("Integration.Host.dll", settings);
        (HttpStatusCode, string) ready = default;
        string? refusal = null;
        var refused = await Eventually.TrueAsync(async () =>
        {
            using var response = await host.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            ready = (response.StatusCode, await response.Content.ReadAsStringAsync());
            refusal = host.Output.Split('\n').FirstOrDefault(l => l.Contains(reason, StringComparison.OrdinalIgnoreCase));
            return response.StatusCode == HttpStatusCode.ServiceUnavailable && refusal is not null;
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(500));
        Assert.That(refused, Is.True, () => $"precondition: the refused TLS handshake shows ('{reason}'); readiness {ready}\n{Tail(host.Output)}");
        TestContext.Out.WriteLine($"readiness {ready.Item1}: {ready.Item2}");
        TestContext.Out.WriteLine(refusal);
        return (ready, refusal!);
    }

    static async Task<Exception?> OpenFailure(string connectionString)
    {
        try
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            return null;
        }
        catch (Exception exception) when (exception is NpgsqlException or System.Security.Authentication.AuthenticationException)
        {
            return exception;
        }
    }

    static string Tail(string log) => log.Length <= 4000 ? log : log[^4000..];
}
