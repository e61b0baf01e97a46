using System.Text;
using System.Text.Json;
using Integration.Host.Tests.Operations;
using Integration.Patterns.Deadlines;
using Integration.Testing;
using Microsoft.Extensions.Options;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Parts;

/// <summary>
/// Deadline budgets on the sample's parts path (client 30 s &gt; gateway 25 s &gt; service 20 s &gt; database 15 s):
/// a request past its deadline is skipped with the reason; one in time is routed carrying the sooner of its deadline
/// and the gateway budget; budgets that do not shrink stop the host naming the key.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class PartsDeadlines_Specs
{
    static byte[] Request(string requestId) =>
        Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { requestId, deviceId = "truck-8", category = "hydraulics", sku = "SKU-1", quantity = 1 }));

    static async Task Publish(IConnection connection, byte[] body, string deadline)
    {
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties
        {
            ContentType = "application/json", Persistent = true, MessageId = Guid.NewGuid().ToString(),
            Headers = new Dictionary<string, object?> { [MessageDeadline.Header] = deadline },
        };
        await channel.BasicPublishAsync("", "parts-requests", mandatory: true, properties, body);
    }

    [Test]
    public async Task When_a_request_has_passed_its_deadline_should_skip_it_with_the_reason_and_route_the_next_under_the_gateway_budget()
    {
        await using var host = await ControlHost.StartAsync("parts-dl");
        await using var harness = await RouteHarness.StartAsync(host.Broker);
        await harness.WatchAsync("parts-requests", "parts-hydraulics");
        await using var connection = await new ConnectionFactory { Uri = host.Broker.AmqpUri }.CreateConnectionAsync("device");
        var late = Guid.NewGuid().ToString();
        var inTime = Guid.NewGuid().ToString();
        var far = MessageDeadline.After(TimeSpan.FromMinutes(10));

        await Publish(connection, Request(late), MessageDeadline.After(TimeSpan.FromMinutes(-1)).ToString());
        await Publish(connection, Request(inTime), far.ToString());

        var skipped = await harness.NextSkippedAsync("parts-requests", TimeSpan.FromSeconds(20));
        Assert.That(skipped.Text, Does.Contain(late));
        Assert.That(skipped.Headers[MessageDeadline.SkippedReasonHeader], Does.Contain("before 'parts-requests' could start"));
        var routed = await harness.WaitForAsync("parts-hydraulics", m => m.Text.Contains(inTime, StringComparison.Ordinal), TimeSpan.FromSeconds(20));
        var carried = DateTimeOffset.Parse(routed.Headers[MessageDeadline.Header], System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(carried, Is.LessThan(far.At), "the gateway budget (25 s) is sooner than the 10 minutes the device allowed");
        Assert.That(carried - DateTimeOffset.UtcNow, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(25)));
    }

    [Test]
    public async Task When_the_service_budget_is_not_shorter_than_the_gateways_should_not_start_naming_the_key()
    {
        Exception? failure = null;
        try
        {
            await using var host = await TestHost.StartAsync("parts-dlcfg", new Dictionary<string, string?> { ["Integration:Deadlines:Service"] = "00:00:26" },
                options => options.ReadinessPath = null);
        }
        catch (Exception exception)
        {
            failure = exception;
        }

        Assert.That(failure, Is.InstanceOf<OptionsValidationException>());
        Assert.That(failure!.Message, Does.Contain("Integration:Deadlines:Service (00:00:26) must be shorter than Integration:Deadlines:Gateway"));
    }
}
