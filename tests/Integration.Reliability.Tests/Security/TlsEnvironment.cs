using System.Net.Http.Headers;
using System.Text;
using Npgsql;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Security;

/// <summary>
/// The TLS services <c>scripts/services.sh</c> (<c>integration_tls</c>) starts beside the shared ones, as ./test.sh exports them:
/// a RabbitMQ node with only a TLS listener that verifies peers, a PostgreSQL instance that accepts TLS only, and the
/// throw-away CA and client certificates. A spec run without them fails naming the function that starts them.
/// </summary>
public sealed class TlsEnvironment
{
    TlsEnvironment(Uri amqps, Uri management, string ca, string clientCertificate, string rogueClientCertificate, string passphrase, string? postgres)
    {
        AmqpsUri = amqps;
        ManagementUri = management;
        CaCertificate = ca;
        ClientCertificate = clientCertificate;
        RogueClientCertificate = rogueClientCertificate;
        Passphrase = passphrase;
        Postgres = postgres;
    }

    /// <summary><c>amqps://guest:guest@localhost:5691/</c> (INTEGRATION_TLS_RABBITMQ_URI).</summary>
    public Uri AmqpsUri { get; }

    /// <summary>The TLS node's management API (INTEGRATION_TLS_RABBITMQ_MANAGEMENT_URI).</summary>
    public Uri ManagementUri { get; }

    /// <summary>The throw-away CA (PEM) that signed the servers' and the client's certificates.</summary>
    public string CaCertificate { get; }

    /// <summary>A client certificate (PKCS#12) the CA signed.</summary>
    public string ClientCertificate { get; }

    /// <summary>A client certificate (PKCS#12) from another CA: the broker must refuse it.</summary>
    public string RogueClientCertificate { get; }

    /// <summary>Passphrase of both PKCS#12 files.</summary>
    public string Passphrase { get; }

    /// <summary>The TLS PostgreSQL instance (SSL Mode=VerifyFull, the CA as root certificate), when started.</summary>
    public string? Postgres { get; }

    /// <summary>The environment ./test.sh exported; fails the spec when the TLS node is not there.</summary>
    public static TlsEnvironment Require(bool postgres = false)
    {
        string Variable(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? value
            : throw new AssertionException($"{name} is not set: start the TLS services first (. scripts/services.sh && integration_tls), as ./test.sh does");
        var environment = new TlsEnvironment(
            new Uri(Variable("INTEGRATION_TLS_RABBITMQ_URI")), new Uri(Variable("INTEGRATION_TLS_RABBITMQ_MANAGEMENT_URI")), Variable("INTEGRATION_TLS_CA"),
            Variable("INTEGRATION_TLS_CLIENT_CERTIFICATE"), Variable("INTEGRATION_TLS_ROGUE_CLIENT_CERTIFICATE"), Variable("INTEGRATION_TLS_CLIENT_PASSPHRASE"),
            postgres ? Variable("INTEGRATION_TLS_POSTGRES") : Environment.GetEnvironmentVariable("INTEGRATION_TLS_POSTGRES"));
        return environment;
    }

    /// <summary>A management API call on the TLS node (guest, loopback).</summary>
    public async Task<HttpResponseMessage> ManagementRequest(HttpMethod method, string path, string? json = null)
    {
        using var client = new HttpClient { BaseAddress = ManagementUri, Timeout = TimeSpan.FromSeconds(30) };
        var user = AmqpsUri.UserInfo.Split(':');
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
            Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Uri.UnescapeDataString(user[0])}:{Uri.UnescapeDataString(user.ElementAtOrDefault(1) ?? "")}")));
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        return await client.SendAsync(request);
    }

    /// <summary>A virtual host of its own on the TLS node (guest may use it); dispose deletes it.</summary>
    public async Task<TlsVirtualHost> CreateVirtualHostAsync(string prefix)
    {
        var name = $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];
        var escaped = Uri.EscapeDataString(name);
        using (var created = await ManagementRequest(HttpMethod.Put, $"api/vhosts/{escaped}"))
            created.EnsureSuccessStatusCode();
        using (var granted = await ManagementRequest(HttpMethod.Put, $"api/permissions/{escaped}/guest", """{"configure":".*","write":".*","read":".*"}"""))
            granted.EnsureSuccessStatusCode();
        return new TlsVirtualHost(this, name);
    }

    /// <summary>A database of its own on the TLS PostgreSQL instance; its connection string keeps SSL Mode=VerifyFull.</summary>
    public async Task<TlsDatabase> CreateDatabaseAsync(string prefix)
    {
        var name = $"{prefix}_{Guid.NewGuid():N}"[..(prefix.Length + 13)];
        await using (var connection = new NpgsqlConnection(Postgres))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
            await create.ExecuteNonQueryAsync();
        }

        return new TlsDatabase(Postgres!, name);
    }

    /// <summary>The host's broker settings for <paramref name="virtualHost"/> over TLS, with <paramref name="clientCertificate"/> (none when null).</summary>
    public Dictionary<string, string?> HostSettings(string virtualHost, string? clientCertificate) => new()
    {
        ["Integration:RabbitMq:Host"] = AmqpsUri.Host,
        ["Integration:RabbitMq:Port"] = AmqpsUri.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Integration:RabbitMq:VirtualHost"] = virtualHost,
        ["Integration:RabbitMq:Username"] = Uri.UnescapeDataString(AmqpsUri.UserInfo.Split(':')[0]),
        ["Integration:RabbitMq:Password"] = Uri.UnescapeDataString(AmqpsUri.UserInfo.Split(':')[1]),
        ["Integration:RabbitMq:UseTls"] = "true",
        ["Integration:RabbitMq:TlsServerName"] = "localhost",
        ["Integration:RabbitMq:TlsClientCertificatePath"] = clientCertificate,
        ["Integration:RabbitMq:TlsClientCertificatePassphrase"] = clientCertificate is null ? null : Passphrase,
        ["Integration:RabbitMq:ManagementUri"] = ManagementUri.ToString(),
        // The host process trusts the throw-away CA (and only it): .NET on Linux reads its root store from SSL_CERT_FILE.
        ["SSL_CERT_FILE"] = CaCertificate,
    };
}

/// <summary>A virtual host on the TLS node.</summary>
public sealed class TlsVirtualHost(TlsEnvironment environment, string name) : IAsyncDisposable
{
    /// <summary>Its name.</summary>
    public string Name { get; } = name;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        using var deleted = await environment.ManagementRequest(HttpMethod.Delete, $"api/vhosts/{Uri.EscapeDataString(Name)}");
    }
}

/// <summary>A database on the TLS PostgreSQL instance.</summary>
public sealed class TlsDatabase(string server, string name) : IAsyncDisposable
{
    /// <summary>Its name.</summary>
    public string Name { get; } = name;

    /// <summary>Connection string (SSL Mode=VerifyFull, the CA as root certificate).</summary>
    public string ConnectionString { get; } = new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(server);
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{Name}\" WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }
}
