using System.Text.Json;
using Npgsql;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class IntegrationTestHost_Specs
{
    [Test]
    public async Task When_the_host_starts_should_run_ready_on_a_virtual_host_and_database_of_its_own()
    {
        await using var host = await SampleHost.StartAsync();

        using var ready = await host.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
        Assert.Multiple(() =>
        {
            Assert.That(ready.IsSuccessStatusCode, Is.True);
            Assert.That(host.Settings["Integration:RabbitMq:VirtualHost"], Is.EqualTo(host.Broker.VirtualHost));
            Assert.That(host.Settings["Integration:Postgres:ConnectionString"], Is.EqualTo(host.Database.ConnectionString));
            Assert.That(host.Broker.VirtualHost, Does.StartWith("kit-"));
            Assert.That(host.Database.Name, Does.StartWith("kit_"));
        });
    }

    [Test]
    public async Task When_the_host_is_disposed_should_delete_its_virtual_host_and_drop_its_database()
    {
        var host = await SampleHost.StartAsync();
        var (vhost, database) = (host.Broker.VirtualHost, host.Database.Name);

        await host.DisposeAsync();

        var infrastructure = await IntegrationInfrastructure.GetAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(await VirtualHostsAsync(infrastructure, vhost), Is.Empty);
            Assert.That(await DatabasesAsync(infrastructure, database), Is.Empty);
        });
    }

    [Test]
    public async Task When_the_host_fails_to_start_should_clean_up_and_say_why()
    {
        var prefix = "fail" + Guid.NewGuid().ToString("N")[..8];

        var failure = Assert.CatchAsync(() => SampleHost.StartAsync(options =>
        {
            options.NamePrefix = prefix;
            options.Settings["Integration:Fulfillment:ApprovalTimeout"] = "00:00:00";
        }));

        var infrastructure = await IntegrationInfrastructure.GetAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(Flatten(failure), Does.Contain("ApprovalTimeout"));
            Assert.That(await VirtualHostsAsync(infrastructure, prefix), Is.Empty, "virtual hosts left behind");
            Assert.That(await DatabasesAsync(infrastructure, prefix), Is.Empty, "databases left behind");
        });
    }

    static string Flatten(Exception? exception)
    {
        var messages = new List<string>();
        for (var e = exception; e is not null; e = e.InnerException)
            messages.Add(e.Message);
        return string.Join(" | ", messages);
    }

    internal static async Task<IReadOnlyList<string>> VirtualHostsAsync(IntegrationInfrastructure infrastructure, string prefix)
    {
        using var response = await infrastructure.ManagementRequest(HttpMethod.Get, "api/vhosts");
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.EnumerateArray().Select(v => v.GetProperty("name").GetString()!).Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).ToList();
    }

    internal static async Task<IReadOnlyList<string>> DatabasesAsync(IntegrationInfrastructure infrastructure, string prefix)
    {
        await using var connection = new NpgsqlConnection(infrastructure.PostgresConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT datname FROM pg_database WHERE datname LIKE @prefix || '%'", connection);
        command.Parameters.AddWithValue("prefix", prefix);
        var names = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
            names.Add(reader.GetString(0));
        return names;
    }
}
