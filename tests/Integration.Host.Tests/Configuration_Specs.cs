using Microsoft.Extensions.Options;
using NUnit.Framework;

namespace Integration.Host.Tests;

/// <summary>Bad configuration stops the host at start with the full key of the setting; no services are needed.</summary>
[TestFixture]
public sealed class Configuration_Specs
{
    static Exception? StartWith(Dictionary<string, string?> settings)
    {
        using var factory = new HostFactory(settings);
        try
        {
            using var client = factory.CreateClient();
            return null;
        }
        catch (Exception exception)
        {
            return exception;
        }
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
    public void When_broker_host_is_missing_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:RabbitMq:Host"] = "";

        var failure = StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:RabbitMq:Host"));
    }

    [Test]
    public void When_port_is_out_of_range_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:RabbitMq:Port"] = "70000";

        var failure = StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:RabbitMq:Port"));
    }

    [Test]
    public void When_connection_string_is_malformed_should_fail_naming_the_setting()
    {
        var settings = Valid();
        settings["Integration:Postgres:ConnectionString"] = "this is not=a;valid connection string";

        var failure = StartWith(settings);

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:Postgres:ConnectionString"));
    }
}
