using NUnit.Framework;

namespace Integration.Host.Tests.Scaling;

/// <summary>The scale-out settings are validated at start; a bad value stops the host naming its full key.</summary>
[TestFixture]
[Category("Integration")]
public sealed class ScalingConfiguration_Specs
{
    static async Task<Exception?> StartWith(string key, string value)
    {
        try
        {
            await using var host = await TestHost.StartAsync($"scl{Guid.NewGuid():N}"[..12], new Dictionary<string, string?> { [key] = value },
                options => options.ReadinessPath = null);
        }
        catch (Exception exception)
        {
            return exception;
        }

        return null;
    }

    [TestCase("Integration:RabbitMq:QueueType", "Stream")]
    [TestCase("Integration:RabbitMq:QueueType", "7")]
    public async Task When_the_queue_type_is_not_classic_or_quorum_should_fail_naming_the_setting(string key, string value)
    {
        var failure = await StartWith(key, value);

        Assert.That(failure, Is.Not.Null, "the host started with an unknown queue type");
        Assert.That(failure!.ToString(), Does.Contain("Integration:RabbitMq:QueueType"));
    }

    [TestCase("localhost:0")]
    [TestCase("localhost:port")]
    [TestCase(":5672")]
    public async Task When_a_cluster_node_is_not_host_and_port_should_fail_naming_the_setting(string node)
    {
        var failure = await StartWith("Integration:RabbitMq:ClusterNodes:0", node);

        Assert.That(failure, Is.Not.Null, $"the host started with cluster node '{node}'");
        Assert.That(failure!.Message, Does.Contain("Integration:RabbitMq:ClusterNodes:0"));
    }
}
