using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.Security;

/// <summary>
/// Least privilege on the broker: the host prints the RabbitMQ permissions it needs (<c>GET /api/control/permissions</c>,
/// control action <c>permissions.show</c>); on a fresh virtual host, a user made with exactly those patterns (and no
/// management tag) runs the whole sample — orders through the saga, parts requests through the routes — and a route
/// switched at run time to a destination the host never declared fails loudly with the broker's refusal, and loses
/// nothing.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class LeastPrivilege_Specs
{
    const string OperatorKey = "least-privilege-operator-key-0123456789";

    readonly string _user = $"lp-{Guid.NewGuid():N}"[..16];
    readonly string _password = $"Lp{Guid.NewGuid():N}";

    IntegrationInfrastructure _infrastructure = null!;
    TestBroker _broker = null!;
    TestDatabase _database = null!;
    HostProcess? _host;
    JsonElement _permissions;

    [OneTimeSetUp]
    public async Task RunTheSampleUnderAUserWithExactlyThePermissionsItPrints()
    {
        _infrastructure = await IntegrationInfrastructure.GetAsync();
        _database = await _infrastructure.CreateDatabaseAsync("leastprivilege");

        // 1. A host with the administrator-style user on a scratch virtual host prints what it needs.
        await using (var scratch = await _infrastructure.CreateVirtualHostAsync("lp-scratch"))
        {
            await using var privileged = await HostProcess.StartAsync("Integration.Host.dll", Settings(scratch.HostSettings()));
            Assert.That(await privileged.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(90)), Is.True, () => $"privileged host not ready:\n{privileged.Output}");
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/control/permissions");
            request.Headers.Add("X-Api-Key", OperatorKey);
            using var response = await privileged.Client.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
            _permissions = JsonDocument.Parse(body).RootElement.GetProperty("data").Clone();
            TestContext.Out.WriteLine(body);
        }

        // 2. A fresh virtual host (nothing declared yet) and a user with exactly those patterns, no tags.
        _broker = await _infrastructure.CreateVirtualHostAsync("lp");
        var vhost = Uri.EscapeDataString(_broker.VirtualHost);
        using (var user = await _infrastructure.ManagementRequest(HttpMethod.Put, $"api/users/{_user}", JsonSerializer.Serialize(new { password = _password, tags = "" })))
            user.EnsureSuccessStatusCode();
        using (var granted = await _infrastructure.ManagementRequest(HttpMethod.Put, $"api/permissions/{vhost}/{_user}", JsonSerializer.Serialize(new
               {
                   configure = Pattern("configure"), write = Pattern("write"), read = Pattern("read"),
               })))
            granted.EnsureSuccessStatusCode();

        // 3. The host under that user.
        var settings = Settings(_broker.HostSettings());
        settings["Integration:RabbitMq:Username"] = _user;
        settings["Integration:RabbitMq:Password"] = _password;
        _host = await HostProcess.StartAsync("Integration.Host.dll", settings);
        Assert.That(await _host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(90)), Is.True, () => $"the least-privilege host never became ready:\n{Tail(_host.Output)}");
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (_host is not null)
        {
            // The whole output of the least-privilege host, for the failure messages' tails.
            await File.WriteAllTextAsync(Path.Combine(TestContext.CurrentContext.WorkDirectory, "least-privilege-host.log"), _host.Output);
            await _host.DisposeAsync();
        }
        if (_broker is not null)
            await _broker.DisposeAsync();
        if (_database is not null)
            await _database.DisposeAsync();
        if (_infrastructure is not null)
        {
            using var deleted = await _infrastructure.ManagementRequest(HttpMethod.Delete, $"api/users/{_user}");
        }
    }

    Dictionary<string, string?> Settings(IReadOnlyDictionary<string, string?> broker) => new(broker)
    {
        ["Integration:Postgres:ConnectionString"] = _database.ConnectionString,
        ["Integration:ControlBus:ApiKeys:0:Name"] = "operator",
        ["Integration:ControlBus:ApiKeys:0:Key"] = OperatorKey,
        ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
    };

    string Pattern(string permission) => _permissions.GetProperty(permission).GetString()!;

    [Test]
    public void Should_print_anchored_patterns_naming_the_hosts_queues_and_no_wildcard_for_everything()
    {
        foreach (var permission in new[] { "configure", "write", "read" })
        {
            var pattern = Pattern(permission);
            Assert.That(pattern, Does.StartWith("^(").And.EndWith(")$"), permission);
            Assert.That(pattern, Does.Not.Contain("|.*").And.Not.Contain("(.*"), $"{permission} allows everything");
            var regex = new System.Text.RegularExpressions.Regex(pattern);
            Assert.That(regex.IsMatch("parts-requests"), Is.True, $"{permission}: the route's queue");
            Assert.That(regex.IsMatch("order-fulfillment"), Is.True, $"{permission}: the saga's queue");
            Assert.That(regex.IsMatch("someone-elses-queue"), Is.False, $"{permission}: a queue the host does not use");
            // Declared, bound to MassTransit:Fault (read on the source, write on the destination) and published to.
            Assert.That(regex.IsMatch("MassTransit:Fault--Integration.Host.Parts:PartsRequest--") && regex.IsMatch("MassTransit:Fault"), Is.True,
                $"{permission}: the fault exchanges MassTransit publishes to when a consumer of a host's type fails");
            Assert.That(regex.IsMatch("MassTransit:Fault--Someone.Else:Thing--"), Is.False, $"{permission}: another namespace's fault exchange");
        }

        Assert.That(_permissions.GetProperty("queues").EnumerateArray().Select(q => q.GetString()), Does.Contain("parts-electronics").And.Contain("message-store"));
        Assert.That(_permissions.GetProperty("rabbitMqCtl").GetString(), Does.StartWith("rabbitmqctl set_permissions -p"));
    }

    [Test]
    public async Task When_the_whole_sample_runs_under_that_user_should_complete_an_order_and_route_a_parts_request()
    {
        var orderId = Guid.NewGuid();
        using var accepted = await _host!.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId, deviceId = "truck-lp", region = "north", lines = new[] { new { sku = "PUMP-1", quantity = 2 } },
        });
        Assert.That(accepted.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        string? status = null;
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            using var response = await _host.Client.GetAsync(new Uri($"/api/orders/{orderId}", UriKind.Relative));
            status = response.IsSuccessStatusCode ? JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString() : null;
            return status == "Completed";
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250)), Is.True, () => $"order never completed under least privilege (last {status}):\n{Tail(_host.Output)}");

        var requestId = $"lp-{Guid.NewGuid():N}";
        await PublishPartsRequest(requestId, "hydraulics");
        Assert.That(await Taken("parts-hydraulics", requestId), Is.True, () => $"the parts request was not routed:\n{Tail(_host.Output)}");
    }

    /// <remarks>
    /// RabbitMQ closes the channel a declaration was refused on, and MassTransit sends from a consumer on the receive
    /// endpoint's channel: refused there, the message could be neither acknowledged nor moved to its error queue. The
    /// host declares a route's destinations on a channel of its own first (Integration.Hosting's queue addressing), so the
    /// refusal fails the send, and the message is retried and moved to <c>parts-requests_error</c> with the broker's
    /// reason; nothing reaches, or creates, the undeclared queue. Once the route is fixed, the message moved back is
    /// routed to its real destination.
    /// </remarks>
    [Test]
    public async Task When_a_route_is_switched_to_an_undeclared_destination_should_move_the_message_to_the_error_queue_with_the_broker_reason()
    {
        await ReplaceTable(new Dictionary<string, string> { ["electronics"] = "undeclared-destination" });
        var requestId = $"lp-{Guid.NewGuid():N}";
        BasicGetResult? failed;
        try
        {
            await PublishPartsRequest(requestId, "electronics");

            failed = null;
            Assert.That(await Eventually.TrueAsync(async () => (failed = await Take("parts-requests_error", requestId)) is not null, TimeSpan.FromSeconds(90)),
                Is.True, () => $"the refused request did not reach parts-requests_error:\n{Tail(_host!.Output)}");
            var reason = failed!.BasicProperties.Headers is { } headers && headers.TryGetValue("MT-Fault-Message", out var value) && value is byte[] bytes
                ? Encoding.UTF8.GetString(bytes)
                : "";
            TestContext.Out.WriteLine(reason);
            Assert.That(reason, Does.Contain("ACCESS_REFUSED").And.Contain("undeclared-destination").And.Contain($"refused for user '{_user}'"),
                "the error queue's reason names the broker's refusal, the destination and the user");
            Assert.That(await _broker.QueueMessageCountAsync("undeclared-destination"), Is.Null, "the broker never let the host declare it");
        }
        finally
        {
            await ReplaceTable(new Dictionary<string, string> { ["electronics"] = "parts-electronics", ["hydraulics"] = "parts-hydraulics" });
        }

        // Nothing was lost: the failed message, moved back as an operator would once the route is fixed, arrives.
        await MoveBack(failed!, "parts-requests");
        Assert.That(await Taken("parts-electronics", requestId, TimeSpan.FromSeconds(60)), Is.True,
            () => $"the request moved back from the error queue was not routed:\n{Tail(_host!.Output)}");
    }

    async Task MoveBack(BasicGetResult message, string queue)
    {
        var factory = new ConnectionFactory { Uri = _broker.AmqpUri };
        await using var connection = await factory.CreateConnectionAsync("least-privilege-spec");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        await channel.BasicPublishAsync("", queue, mandatory: true, new BasicProperties(message.BasicProperties), message.Body);
    }

    async Task ReplaceTable(Dictionary<string, string> keys)
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/control/routes/parts-requests/tables/by-category");
        request.Headers.Add("X-Api-Key", OperatorKey);
        request.Content = JsonContent.Create(new { keys, otherwise = "parts-general" });
        using var replaced = await _host!.Client.SendAsync(request);
        Assert.That(replaced.StatusCode, Is.EqualTo(HttpStatusCode.OK), await replaced.Content.ReadAsStringAsync());
    }

    async Task PublishPartsRequest(string requestId, string category)
    {
        var factory = new ConnectionFactory { Uri = _broker.AmqpUri };
        await using var connection = await factory.CreateConnectionAsync("least-privilege-spec");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var body = JsonSerializer.Serialize(new { requestId, deviceId = "truck-lp", category, sku = "VALVE-1", quantity = 1 });
        await channel.BasicPublishAsync("", "parts-requests", mandatory: true, new BasicProperties { ContentType = "application/json", MessageId = requestId, Persistent = true },
            Encoding.UTF8.GetBytes(body));
    }

    async Task<bool> Taken(string queue, string requestId, TimeSpan? timeout = null) =>
        await Eventually.TrueAsync(async () => await Take(queue, requestId) is not null, timeout ?? TimeSpan.FromSeconds(30));

    /// <summary>Takes messages from <paramref name="queue"/> until the one whose body carries <paramref name="requestId"/>.</summary>
    async Task<BasicGetResult?> Take(string queue, string requestId)
    {
        var factory = new ConnectionFactory { Uri = _broker.AmqpUri };
        await using var connection = await factory.CreateConnectionAsync("least-privilege-spec");
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            while (await channel.BasicGetAsync(queue, autoAck: true) is { } message)
            {
                if (Encoding.UTF8.GetString(message.Body.Span).Contains(requestId, StringComparison.Ordinal))
                    return message;
            }
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
        {
        }

        return null;
    }

    static string Tail(string log) => log.Length <= 6000 ? log : log[^6000..];
}
