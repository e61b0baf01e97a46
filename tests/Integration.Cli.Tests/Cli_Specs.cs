using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Cli.Tests;

/// <summary>The <c>integration</c> tool against the sample host running as its own process on a real port, with a real broker and database.</summary>
[TestFixture]
[Category("Integration")]
public sealed partial class Cli_Specs
{
    const string OperatorKey = "operator-key-0123456789";
    const string ViewerKey = "viewer-key-0123456789ab";
    const string Source = "cli-orders";
    const string ErrorQueue = "cli-orders_error";
    const int Failed = 250;

    TestBroker _broker = null!;
    TestDatabase _database = null!;
    HostProcess _host = null!;

    [OneTimeSetUp]
    public async Task StartTheSampleHost()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("cli");
        _database = await infrastructure.CreateDatabaseAsync("cli");
        _host = await HostProcess.StartAsync("Integration.Host.dll", new Dictionary<string, string?>(_broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = _database.ConnectionString,
            ["Integration:Probes:Enabled"] = "false",
            ["Integration:ControlBus:ApiKeys:0:Name"] = "ops",
            ["Integration:ControlBus:ApiKeys:0:Key"] = OperatorKey,
            ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
            ["Integration:ControlBus:ApiKeys:1:Name"] = "dashboard",
            ["Integration:ControlBus:ApiKeys:1:Key"] = ViewerKey,
            ["Integration:ControlBus:ApiKeys:1:Role"] = "Viewer",
        });
        Assert.That(await _host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(60)), Is.True, () => $"host never became ready:\n{_host.Output}");
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _host.DisposeAsync();
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    Task<CliRun> Run(string key, params string[] args) => CliRun.RunAsync([.. args, "--url", _host.Address.ToString(), "--key", key]);

    async Task SeedFailures(int count)
    {
        await using var connection = await new ConnectionFactory { Uri = _broker.AmqpUri }.CreateConnectionAsync("cli-spec");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        await channel.QueueDeclareAsync(Source, durable: true, exclusive: false, autoDelete: false);
        await channel.QueueDeclareAsync(ErrorQueue, durable: true, exclusive: false, autoDelete: false);
        await channel.QueuePurgeAsync(Source);
        for (var i = 0; i < count; i++)
        {
            var properties = new BasicProperties
            {
                MessageId = Guid.NewGuid().ToString(),
                ContentType = "application/json",
                Persistent = true,
                Headers = new Dictionary<string, object?>
                {
                    ["MT-Fault-ExceptionType"] = "System.TimeoutException",
                    ["MT-Fault-Message"] = $"supplier timed out ({i})",
                    ["MT-Fault-MessageType"] = "urn:message:Acme:OrderPlaced",
                    ["MT-Fault-Timestamp"] = DateTimeOffset.UtcNow.ToString("O"),
                },
            };
            await channel.BasicPublishAsync("", ErrorQueue, mandatory: true, properties, Encoding.UTF8.GetBytes($$"""{"number":{{i}}}"""));
        }
    }

    [Test]
    public async Task Describe_should_list_the_hosts_routes_and_endpoints()
    {
        var run = await Run(ViewerKey, "describe");

        Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
        Assert.That(run.Output, Does.Contain("Routes").And.Contain("Receive endpoints").And.Contain("Sagas"));
        Assert.That(run.Output, Does.Contain("parts-requests"), run.ToString());
    }

    [Test]
    public async Task Check_env_should_pass_broker_database_migrations_and_key()
    {
        var run = await Run(ViewerKey, "check-env");

        Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
        Assert.That(run.Output, Does.Contain("broker (rabbitmq)").And.Contain("database (postgres)").And.Contain("none pending").And.Contain("ops (Operator)"));
        Assert.That(run.Output, Does.Not.Contain(OperatorKey), "keys are never printed");
    }

    [Test]
    public async Task Check_env_with_an_unknown_key_should_fail_the_key_check_with_exit_code_1()
    {
        var run = await Run("not-a-key-0123456789", "check-env");

        Assert.That(run.ExitCode, Is.EqualTo(1), run.ToString());
        Assert.That(run.Output, Does.Contain("Unauthorized"));
    }

    [Test]
    public async Task Failures_list_then_retry_should_move_the_group_with_progress_and_list_nothing_after()
    {
        await SeedFailures(Failed);

        var list = await Run(ViewerKey, "failures", "list", "--queue", ErrorQueue);
        Assert.That(list.ExitCode, Is.EqualTo(1), "failed messages found: exit code 1\n" + list);
        var group = GroupId().Match(list.Output).Value;
        Assert.That(group, Is.Not.Empty, list.ToString());
        Assert.That(list.Output, Does.Contain("System.TimeoutException").And.Contain($"{Failed} failed message(s) in 1 group(s)"));

        var retry = await Run(OperatorKey, "failures", "retry", group, "--batch", "40");

        Assert.That(retry.ExitCode, Is.EqualTo(0), retry.ToString());
        Assert.That(retry.Output, Does.Contain($"Moved {Failed} message(s)").And.Contain($"Retrying {group}"), retry.ToString());
        Assert.That(await _broker.QueueMessageCountAsync(Source), Is.EqualTo(Failed));
        Assert.That(await _broker.QueueMessageCountAsync(ErrorQueue), Is.Zero);
        var after = await Run(ViewerKey, "failures", "list", "--queue", ErrorQueue);
        Assert.That(after.ExitCode, Is.EqualTo(0), after.ToString());
        Assert.That(after.Output, Does.Contain("No failed messages"));
    }

    [Test]
    public async Task Failures_retry_with_a_viewer_key_should_exit_4_and_move_nothing()
    {
        await SeedFailures(3);
        var group = GroupId().Match((await Run(ViewerKey, "failures", "list", "--queue", ErrorQueue)).Output).Value;

        var run = await Run(ViewerKey, "failures", "retry", group);

        Assert.That(run.ExitCode, Is.EqualTo(4), run.ToString());
        Assert.That(run.Output, Does.Contain("Forbidden"));
        Assert.That(await _broker.QueueMessageCountAsync(ErrorQueue), Is.GreaterThanOrEqualTo(3));
        await Run(OperatorKey, "failures", "retry", "--queue", ErrorQueue);
    }

    [Test]
    public async Task Failures_retry_by_filter_should_move_only_matching_messages()
    {
        await SeedFailures(5);
        var run = await Run(OperatorKey, "failures", "retry", "--queue", ErrorQueue, "--reason", "timed out (3)");

        Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
        Assert.That(run.Output, Does.Contain("Moved 1 message(s)"));
        await Run(OperatorKey, "failures", "retry", "--queue", ErrorQueue);
    }

    [Test]
    public async Task Failures_retry_without_group_or_filter_should_exit_2()
    {
        var run = await Run(OperatorKey, "failures", "retry");

        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
        Assert.That(run.Output, Does.Contain("needs a group id or a filter"));
    }

    [Test]
    public async Task An_unknown_command_should_exit_2()
    {
        var run = await CliRun.RunAsync(["frobnicate"]);

        Assert.That(run.ExitCode, Is.EqualTo(2), run.ToString());
    }

    [Test]
    public async Task A_host_that_does_not_answer_should_exit_3()
    {
        var run = await CliRun.RunAsync(["describe", "--url", $"http://127.0.0.1:{HostProcess.FreePort()}/", "--key", ViewerKey]);

        Assert.That(run.ExitCode, Is.EqualTo(3), run.ToString());
        Assert.That(run.Output, Does.Contain("did not answer"));
    }

    [Test]
    public async Task Without_a_key_should_exit_4()
    {
        var run = await CliRun.RunAsync(["failures", "list", "--url", _host.Address.ToString()]);

        Assert.That(run.ExitCode, Is.EqualTo(4), run.ToString());
        Assert.That(run.Output, Does.Contain("--key or INTEGRATION_API_KEY"));
    }

    [GeneratedRegex(@"cli-orders_error\.[0-9a-f]{10}")]
    private static partial Regex GroupId();
}

/// <summary><c>saga show</c> against the contract of <c>GET /api/control/sagas/{saga}/{correlationId}</c> (state and timeline).</summary>
[TestFixture]
public sealed class SagaShow_Specs
{
    sealed class Answer(HttpStatusCode status, string json) : HttpMessageHandler
    {
        public Uri? Asked { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Asked = request.RequestUri;
            return Task.FromResult(new HttpResponseMessage(status) { Content = new StringContent(json, Encoding.UTF8, "application/json") });
        }
    }

    [Test]
    public async Task Should_print_the_state_and_every_timeline_entry()
    {
        var handler = new Answer(HttpStatusCode.OK, """
            {"saga":"order-fulfillment","correlationId":"c-1","state":"AwaitingStock","timeline":[
              {"at":"2026-12-01T10:00:00+00:00","event":"OrderSubmitted","from":"Initial","to":"AwaitingPayment"},
              {"at":"2026-12-01T10:00:02+00:00","event":"PaymentAccepted","from":"AwaitingPayment","to":"AwaitingStock"}]}
            """);

        var run = await CliRun.RunAsync(["saga", "show", "order-fulfillment", "c-1", "--url", "http://host.test/", "--key", "k"], handler);

        Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
        Assert.That(handler.Asked!.AbsolutePath, Is.EqualTo("/api/control/sagas/order-fulfillment/c-1"));
        Assert.That(run.Output, Does.Contain("state AwaitingStock").And.Contain("OrderSubmitted").And.Contain("PaymentAccepted").And.Contain("AwaitingPayment"));
    }

    [Test]
    public async Task Should_exit_5_when_the_instance_does_not_exist()
    {
        var run = await CliRun.RunAsync(["saga", "show", "order-fulfillment", "nope", "--url", "http://host.test/", "--key", "k"],
            new Answer(HttpStatusCode.NotFound, """{"detail":"No order-fulfillment instance 'nope'"}"""));

        Assert.That(run.ExitCode, Is.EqualTo(5), run.ToString());
        Assert.That(run.Output, Does.Contain("No order-fulfillment instance 'nope'"));
    }
}
