using Integration.Testing;
using Microsoft.Extensions.Options;
using Npgsql;
using NUnit.Framework;

namespace Integration.Host.Tests;

/// <summary>Bad configuration stops the host at start with the full key of the setting, and the failed start leaves no vhost or database behind.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Configuration_Specs
{
    static async Task<Exception?> StartWith(Dictionary<string, string?> settings)
    {
        var prefix = $"cfg{Guid.NewGuid():N}"[..12];
        Exception? failure = null;
        try
        {
            await using var host = await TestHost.StartAsync(prefix, settings, options => options.ReadinessPath = null);
        }
        catch (Exception exception)
        {
            failure = exception;
        }

        var infrastructure = await IntegrationInfrastructure.GetAsync();
        using (var vhosts = await infrastructure.ManagementRequest(HttpMethod.Get, "api/vhosts?columns=name"))
            Assert.That(await vhosts.Content.ReadAsStringAsync(), Does.Not.Contain(prefix), "the failed start leaked its virtual host");
        await using var connection = new NpgsqlConnection(infrastructure.PostgresConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_database WHERE datname LIKE @prefix", connection);
        command.Parameters.AddWithValue("prefix", prefix + "%");
        Assert.That(await command.ExecuteScalarAsync(), Is.Zero, "the failed start leaked its database");
        return failure;
    }

    static Dictionary<string, string?> Valid() => new()
    {
        ["Integration:RabbitMq:Host"] = "localhost",
        ["Integration:RabbitMq:Username"] = "guest",
        ["Integration:RabbitMq:Password"] = "guest",
        ["Integration:Postgres:ConnectionString"] = "Host=localhost;Database=x;Username=u;Password=p",
        ["Integration:Postgres:MigrateOnStart"] = "false",
    };

    [Test]
    public async Task When_broker_host_is_missing_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:RabbitMq:Host"] = "";

        var failure = await StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:RabbitMq:Host"));
    }

    [Test]
    public async Task When_port_is_out_of_range_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:RabbitMq:Port"] = "70000";

        var failure = await StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:RabbitMq:Port"));
    }

    [Test]
    public async Task When_connection_string_is_malformed_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:Postgres:ConnectionString"] = "this is not=a;valid connection string";

        var failure = await StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:Postgres:ConnectionString"));
    }
}
