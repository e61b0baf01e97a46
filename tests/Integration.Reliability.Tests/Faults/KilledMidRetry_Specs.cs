using System.Net;
using System.Text;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.Faults;

/// <summary>
/// A host SIGKILLed in the middle of a bulk retry of failed messages: afterwards every message is in its error queue or
/// back in its source queue — exactly one of the two, never both, never neither.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class KilledMidRetry_Specs
{
    const int Messages = 3000;
    const string Source = "killed-retry-orders";
    const string ErrorQueue = "killed-retry-orders_error";
    const string OperatorKey = "operator-key-0123456789";

    TestBroker _broker = null!;
    TestDatabase _database = null!;
    HostProcess _host = null!;
    readonly HashSet<string> _ids = [];

    [SetUp]
    public async Task FillAnErrorQueueAndStartAHost()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("killed-retry");
        _database = await infrastructure.CreateDatabaseAsync("killed-retry");
        await using (var connection = await Connect())
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true)))
        {
            await channel.QueueDeclareAsync(Source, durable: true, exclusive: false, autoDelete: false);
            await channel.QueueDeclareAsync(ErrorQueue, durable: true, exclusive: false, autoDelete: false);
            for (var batch = 0; batch < Messages / 100; batch++)
            {
                await Task.WhenAll(Enumerable.Range(batch * 100, 100).Select(i =>
                {
                    var id = Guid.NewGuid().ToString();
                    _ids.Add(id);
                    var properties = new BasicProperties
                    {
                        MessageId = id,
                        ContentType = "application/json",
                        Persistent = true,
                        // What MassTransit writes when it moves a message to the error queue.
                        Headers = new Dictionary<string, object?>
                        {
                            ["MT-Fault-ExceptionType"] = "System.TimeoutException",
                            ["MT-Fault-Message"] = $"supplier timed out for order {i}",
                            ["MT-Fault-MessageType"] = "urn:message:Acme:OrderPlaced",
                            ["MT-Fault-Timestamp"] = DateTimeOffset.UtcNow.ToString("O"),
                            ["MT-Fault-StackTrace"] = "at Acme.Supplier.Call()",
                        },
                    };
                    return channel.BasicPublishAsync("", ErrorQueue, mandatory: true, properties, Encoding.UTF8.GetBytes($$"""{"number":{{i}}}""")).AsTask();
                }));
            }
        }

        Assert.That(await _broker.QueueMessageCountAsync(ErrorQueue), Is.EqualTo(Messages), "precondition: the error queue is full");
        _host = await HostProcess.StartAsync("Integration.Host.dll", new Dictionary<string, string?>(_broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = _database.ConnectionString,
            ["Integration:Probes:Enabled"] = "false",
            ["Integration:ControlBus:ApiKeys:0:Name"] = "ops",
            ["Integration:ControlBus:ApiKeys:0:Key"] = OperatorKey,
            ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
        });
        Assert.That(await _host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(60)), Is.True, () => $"host never became ready:\n{_host.Output}");
    }

    [TearDown]
    public async Task Stop()
    {
        await _host.DisposeAsync();
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    Task<IConnection> Connect() => new ConnectionFactory { Uri = _broker.AmqpUri }.CreateConnectionAsync("killed-retry-spec");

    [Test]
    public async Task When_the_host_is_killed_mid_bulk_retry_should_leave_every_message_in_exactly_one_queue()
    {
        using var client = new HttpClient { BaseAddress = _host.Address, Timeout = TimeSpan.FromMinutes(5) };
        client.DefaultRequestHeaders.Add("X-Api-Key", OperatorKey);
        var groups = JsonDocument.Parse(await client.GetStringAsync(new Uri($"/api/control/failures?queue={ErrorQueue}", UriKind.Relative))).RootElement;
        var group = groups.EnumerateArray().Single();
        Assert.That(group.GetProperty("count").GetInt32(), Is.EqualTo(Messages));

        // The retry runs in the host; the spec watches the source queue fill and kills the host while it does.
        var retry = client.PostAsync(new Uri($"/api/control/failures/{group.GetProperty("id").GetString()}/retry", UriKind.Relative), null);
        Assert.That(await Eventually.TrueAsync(async () => await _broker.QueueMessageCountAsync(Source) >= 100, TimeSpan.FromSeconds(60),
            TimeSpan.FromMilliseconds(20)), Is.True, () => $"the retry never started moving messages:\n{_host.Output}");
        _host.Kill();
        try
        {
            using var response = await retry;
            Assert.Inconclusive($"the retry finished ({response.StatusCode}) before the host was killed: make the error queue larger");
        }
        catch (HttpRequestException)
        {
            // The host died mid-request, as intended.
        }

        // The killed host's connection is gone: its unacknowledged deliveries are back in the error queue.
        var settled = await Eventually.TrueAsync(async () =>
            await _broker.QueueMessageCountAsync(Source) + await _broker.QueueMessageCountAsync(ErrorQueue) >= Messages, TimeSpan.FromSeconds(30));
        var inSource = await Drain(Source);
        var inError = await Drain(ErrorQueue);

        Assert.That(settled, Is.True, $"source {inSource.Count} + error {inError.Count} != {Messages}");
        Assert.That(inSource, Has.Count.GreaterThan(0).And.Count.LessThan(Messages), "killed in the middle: some moved, some not");
        Assert.That(inSource.Intersect(inError), Is.Empty, "never in both queues");
        Assert.That(inSource, Is.Unique, "never twice in the source queue");
        Assert.That(inError, Is.Unique, "never twice in the error queue");
        Assert.That(inSource.Concat(inError), Is.EquivalentTo(_ids), "never in neither: every message accounted for");
        TestContext.Out.WriteLine($"killed after moving {inSource.Count} of {Messages}; {inError.Count} still in {ErrorQueue}");
    }

    async Task<List<string>> Drain(string queue)
    {
        var ids = new List<string>();
        await using var connection = await Connect();
        await using var channel = await connection.CreateChannelAsync();
        while (await channel.BasicGetAsync(queue, autoAck: true) is { } message)
            ids.Add(message.BasicProperties.MessageId ?? "(no id)");
        return ids;
    }
}
