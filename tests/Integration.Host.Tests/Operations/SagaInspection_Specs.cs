using System.Net;
using System.Text;
using System.Text.Json;
using Integration.Host.Tests.Fulfillment;
using Integration.Operations;
using Integration.Testing;
using NUnit.Framework;
using Microsoft.Extensions.DependencyInjection;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// Saga inspection on the real host: the fulfillment saga's instances by state and age, one order's timeline (events,
/// transitions, messages sent, pending timeouts), the stuck flag, and repairs through the audited control bus.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class SagaInspection_Specs
{
    const string Saga = "order-fulfillment";
    ControlHost _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("sagainspect", new Dictionary<string, string?>
    {
        ["Integration:Fulfillment:ApprovalQuantityLimit"] = "100",
        ["Integration:Fulfillment:ApprovalTimeout"] = "01:00:00",   // never fires by itself during a spec: only a repair fires it
        ["Integration:Operations:Sagas:StuckAfterMinutes"] = "0.01",
    });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    OrdersClient Orders => new(_host.Client);

    async Task<JsonElement> Instance(Guid orderId)
    {
        var (status, body) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}/{orderId}", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), () => body.ToString());
        return body;
    }

    async Task<JsonElement> WaitForState(Guid orderId, string state)
    {
        JsonElement last = default;
        var reached = await Eventually.TrueAsync(async () =>
        {
            var (status, body) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}/{orderId}", ControlHost.ViewerKey);
            last = body;
            return status == HttpStatusCode.OK && body.GetProperty("state").GetString() == state;
        }, TimeSpan.FromSeconds(30));
        Assert.That(reached, Is.True, () => $"saga {orderId} never reached {state}; last: {last}");
        return last;
    }

    static List<(string Event, string From, string To)> Timeline(JsonElement instance) =>
        instance.GetProperty("timeline").EnumerateArray()
            .Select(t => (t.GetProperty("event").GetString()!, t.GetProperty("from").GetString()!, t.GetProperty("to").GetString()!)).ToList();

    async Task<Guid> AwaitingApproval()
    {
        var orderId = await Orders.Submit(("PUMP-1", 60), ("HOSE-3", 41));
        var instance = await WaitForState(orderId, "AwaitingApproval");
        // The timeout reaches the durable scheduler as a message of its own, just after the saga's transaction.
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            instance = await Instance(orderId);
            return instance.GetProperty("pendingTimeouts").GetArrayLength() == 1;
        }, TimeSpan.FromSeconds(15)), Is.True, () => $"the approval timeout is pending: {instance}");
        return orderId;
    }

    [Test]
    public async Task When_an_order_is_compensated_should_show_its_timeline_in_order_with_the_messages_each_step_sent()
    {
        var orderId = await Orders.Submit(("FAIL-INVENTORY-9", 3));
        await Orders.WaitFor(orderId, "Failed");

        var instance = await Instance(orderId);

        Assert.Multiple(() =>
        {
            Assert.That(instance.GetProperty("state").GetString(), Is.EqualTo("Failed"));
            Assert.That(instance.GetProperty("terminal").GetBoolean(), Is.True);
            Assert.That(instance.GetProperty("stuck").GetBoolean(), Is.False, "a terminal state is never stuck");
            Assert.That(instance.GetProperty("data").GetProperty("state").GetString(), Is.EqualTo("Failed"), "the same instance under data, as every control call");
            Assert.That(Timeline(instance), Is.EqualTo(new[]
            {
                ("Submitted", "Initial", "Reserving"),
                ("Reserved", "Reserving", "CreatingPurchaseOrder"),
                ("PurchaseOrderCreated", "CreatingPurchaseOrder", "UpdatingInventory"),
                ("InventoryUpdateFailed", "UpdatingInventory", "CancellingPurchaseOrder"),
                ("PurchaseOrderCancelled", "CancellingPurchaseOrder", "ReleasingReservation"),
                ("Released", "ReleasingReservation", "Failed"),
            }), "events with their transitions, oldest first");
            var sent = instance.GetProperty("timeline").EnumerateArray()
                .Select(t => t.GetProperty("sent").EnumerateArray().Select(m => m.GetProperty("type").GetString()!).ToList()).ToList();
            // Every step also tells the order's device its new status (OrderStatusChanged, the device hub's feed).
            Assert.That(sent.Select(s => string.Join("+", s.Where(t => t != "OrderStatusChanged"))), Is.EqualTo(new[]
            {
                "ReserveParts", "CreatePurchaseOrder", "UpdateInventory", "CancelPurchaseOrder", "ReleaseReservation", "OrderFulfillmentFailed",
            }), "what each step sent: the compensations newest step first");
            Assert.That(sent.Select(s => s.Count(t => t == "OrderStatusChanged")), Is.All.EqualTo(1), "each transition publishes the order's new status once");
            var at = instance.GetProperty("timeline").EnumerateArray().Select(t => t.GetProperty("at").GetDateTimeOffset()).ToList();
            Assert.That(at, Is.Ordered, "newest last");
        });
    }

    [Test]
    public async Task When_instances_are_listed_should_filter_by_state_and_flag_the_stuck_ones()
    {
        var waiting = await AwaitingApproval();
        var done = await Orders.Submit(("PUMP-1", 1));
        await Orders.WaitFor(done, "Completed");

        var (status, byState) = await _host.Send(HttpMethod.Get, $"/api/control/sagas?saga={Saga}&state=AwaitingApproval", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var ids = byState.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("correlationId").GetGuid()).ToList();
        Assert.That(ids, Does.Contain(waiting).And.Not.Contain(done));

        // StuckAfterMinutes is 0.01 here: the waiting order is soon stuck; the completed one never is (its state is terminal).
        List<Guid> stuck = [];
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            var (_, body) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}?stuck=true&take=500", ControlHost.ViewerKey);
            stuck = body.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("correlationId").GetGuid()).ToList();
            return stuck.Contains(waiting);
        }, TimeSpan.FromSeconds(15)), Is.True, "the waiting order is flagged stuck");
        Assert.That(stuck, Does.Not.Contain(done));

        var (unknown, _) = await _host.Send(HttpMethod.Get, "/api/control/sagas?saga=no-such-saga", ControlHost.ViewerKey);
        Assert.That(unknown, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task When_an_operator_fires_the_pending_timeout_should_run_the_timeout_path_and_audit_it()
    {
        var orderId = await AwaitingApproval();

        var (denied, _) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/timeouts/fire", ControlHost.ViewerKey);
        Assert.That(denied, Is.EqualTo(HttpStatusCode.Forbidden), "a viewer may not repair");
        Assert.That((await Instance(orderId)).GetProperty("state").GetString(), Is.EqualTo("AwaitingApproval"), "nothing changed");

        var (fired, body) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/timeouts/fire", ControlHost.OperatorKey);
        Assert.That(fired, Is.EqualTo(HttpStatusCode.OK), () => body.ToString());

        var instance = await WaitForState(orderId, "Failed");
        var events = Timeline(instance).Select(t => t.Event).ToList();
        Assert.That(events, Does.Contain("operator:saga.timeout.fire"));
        Assert.That(events.Where(e => !e.StartsWith("operator:", StringComparison.Ordinal)),
            Is.EqualTo(new[] { "Submitted", "Reserved", "ApprovalTimeout.Received", "Released" }), "the timeout path, as if it had come by itself");
        Assert.That(instance.GetProperty("pendingTimeouts").GetArrayLength(), Is.Zero);

        var audit = await _host.Audit();
        Assert.That(audit.Where(a => a.Action == "saga.timeout.fire" && a.Target == Saga).Select(a => (a.Actor, a.Outcome)),
            Is.SupersetOf(new[] { ("dashboard", "denied"), ("ops", "ok") }), "both calls audited, with who asked");
    }

    [Test]
    public async Task When_an_operator_cancels_the_timeout_then_finalizes_should_end_the_instance_and_audit_both()
    {
        var orderId = await AwaitingApproval();

        var (cancelled, body) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/timeouts/cancel", ControlHost.OperatorKey);
        Assert.That(cancelled, Is.EqualTo(HttpStatusCode.OK), () => body.ToString());
        Assert.That((await Instance(orderId)).GetProperty("pendingTimeouts").GetArrayLength(), Is.Zero, "the trigger is gone");
        var (again, _) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/timeouts/fire", ControlHost.OperatorKey);
        Assert.That(again, Is.EqualTo(HttpStatusCode.NotFound), "no pending timeout left to fire");

        var (viewer, _) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/finalize", ControlHost.ViewerKey);
        Assert.That(viewer, Is.EqualTo(HttpStatusCode.Forbidden));
        var (finalized, result) = await _host.Send(HttpMethod.Post, $"/api/control/sagas/{Saga}/{orderId}/finalize?reason=customer%20withdrew", ControlHost.OperatorKey);
        Assert.That(finalized, Is.EqualTo(HttpStatusCode.OK), () => result.ToString());

        var instance = await Instance(orderId);
        Assert.Multiple(async () =>
        {
            Assert.That(instance.GetProperty("state").GetString(), Is.EqualTo("Final"));
            Assert.That(Timeline(instance).TakeLast(2), Is.EqualTo(new[]
            {
                ("operator:saga.timeout.cancel", "AwaitingApproval", "AwaitingApproval"),
                ("operator:saga.finalize (customer withdrew)", "AwaitingApproval", "Final"),
            }));
            var audit = await _host.Audit();
            Assert.That(audit.Where(a => a.Target == Saga).Select(a => (a.Action, a.Actor, a.Outcome)), Is.SupersetOf(new[]
            {
                ("saga.timeout.cancel", "ops", "ok"), ("saga.finalize", "dashboard", "denied"), ("saga.finalize", "ops", "ok"),
            }));
        });
    }

    [Test]
    public async Task When_the_instance_is_unknown_or_the_id_malformed_should_say_so()
    {
        var (missing, _) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}/{Guid.NewGuid()}", ControlHost.ViewerKey);
        var (malformed, body) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}/not-a-guid", ControlHost.ViewerKey);
        var (anonymous, _) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/{Saga}/{Guid.NewGuid()}", null);
        Assert.Multiple(() =>
        {
            Assert.That(missing, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(malformed, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body.GetProperty("detail").GetString(), Does.Contain("not-a-guid"));
            Assert.That(anonymous, Is.EqualTo(HttpStatusCode.Unauthorized));
        });
    }

    [Test]
    public async Task When_an_instance_has_been_quiet_past_the_retention_should_delete_its_whole_timeline_and_keep_the_active_ones()
    {
        var (quiet, active) = (Guid.NewGuid(), Guid.NewGuid());
        var old = DateTimeOffset.UtcNow.AddDays(-40);
        await using (var connection = new Npgsql.NpgsqlConnection(_host.Database.ConnectionString))
        {
            await connection.OpenAsync();
            await using var insert = new Npgsql.NpgsqlCommand(
                "INSERT INTO saga_timeline (saga, correlation_id, at, event, from_state, to_state) VALUES " +
                "('retention', @quiet, @old, 'Submitted', 'Initial', 'Reserving'), ('retention', @quiet, @old, 'Reserved', 'Reserving', 'Completed'), " +
                "('retention', @active, @old, 'Submitted', 'Initial', 'Reserving'), ('retention', @active, now(), 'Reserved', 'Reserving', 'AwaitingApproval')", connection);
            insert.Parameters.AddWithValue("quiet", quiet);
            insert.Parameters.AddWithValue("active", active);
            insert.Parameters.AddWithValue("old", old);
            await insert.ExecuteNonQueryAsync();
        }

        // The hourly job's own statement (the default retention, 30 days).
        var deleted = await _host.Services.GetRequiredService<SagaTimelineRetention>().PruneAsync(DateTimeOffset.UtcNow.AddDays(-30), CancellationToken.None);

        await using var check = new Npgsql.NpgsqlConnection(_host.Database.ConnectionString);
        await check.OpenAsync();
        await using var count = new Npgsql.NpgsqlCommand("SELECT correlation_id, count(*) FROM saga_timeline WHERE saga = 'retention' GROUP BY correlation_id", check);
        var left = new Dictionary<Guid, long>();
        await using (var reader = await count.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
                left[reader.GetGuid(0)] = reader.GetInt64(1);
        }

        Assert.Multiple(() =>
        {
            Assert.That(deleted, Is.GreaterThanOrEqualTo(2), "the quiet instance's two rows");
            Assert.That(left.ContainsKey(quiet), Is.False, "the instance quiet for 40 days loses its whole timeline");
            Assert.That(left.GetValueOrDefault(active), Is.EqualTo(2), "an instance with a recent event keeps its whole history, its 40-day-old first row too");
        });
    }

    [TestCase("-1")]
    [TestCase("36501")]
    [TestCase("Infinity")]
    public void When_the_timeline_retention_is_out_of_range_should_refuse_it_naming_the_key(string days)
    {
        var failures = SagaInspectionOptions.Validate(new SagaInspectionOptions
        {
            TimelineRetentionDays = double.Parse(days, System.Globalization.CultureInfo.InvariantCulture),
        }).ToList();
        Assert.That(failures, Has.One.StartsWith("Integration:Operations:Sagas:TimelineRetentionDays"));
    }

    [TestCase("0")]
    [TestCase("-5")]
    [TestCase("NaN")]
    public void When_the_stuck_threshold_is_not_positive_should_refuse_it_naming_the_key(string minutes)
    {
        var failures = SagaInspectionOptions.Validate(new SagaInspectionOptions
        {
            StuckAfterMinutes = double.Parse(minutes, System.Globalization.CultureInfo.InvariantCulture),
        }).ToList();
        Assert.That(failures, Has.One.StartsWith("Integration:Operations:Sagas:StuckAfterMinutes"));
    }
}

/// <summary>The live graph on the real host: routes, itineraries and state machines from their definitions, with counts that match the traffic.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Graph_Specs
{
    ControlHost _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("graph", new Dictionary<string, string?>
    {
        ["Integration:Operations:RefreshSeconds"] = "1",
    });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    static Dictionary<string, JsonElement> Nodes(JsonElement graph) =>
        graph.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("id").GetString()!, n => n);

    static long Count(Dictionary<string, JsonElement> nodes, string id) =>
        nodes.TryGetValue(id, out var node) ? node.GetProperty("count").GetInt64() : -1;

    [Test]
    public async Task When_messages_flow_through_a_route_should_count_each_node_as_the_messages_sent()
    {
        var categories = new[] { "electronics", "hydraulics", "brakes", "electronics", "electronics" };
        await using (var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device"))
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true)))
        {
            foreach (var category in categories)
            {
                var body = $$"""{"requestId":"{{Guid.NewGuid()}}","deviceId":"truck-3","category":"{{category}}","sku":"S-1","quantity":2}""";
                await channel.BasicPublishAsync("", "parts-requests", mandatory: true,
                    new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() }, Encoding.UTF8.GetBytes(body));
            }
        }

        Dictionary<string, JsonElement> nodes = [];
        JsonElement graph = default;
        var counted = await Eventually.TrueAsync(async () =>
        {
            var (status, body) = await _host.Send(HttpMethod.Get, "/api/control/graph", ControlHost.ViewerKey);
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            graph = body;
            nodes = Nodes(body);
            // Every count is awaited: the destinations' sends, the wire tap's copies and the route's receive observer are
            // counted at different moments of one delivery.
            return Count(nodes, "queue:parts-electronics") == 3 && Count(nodes, "queue:parts-hydraulics") == 1 && Count(nodes, "queue:parts-general") == 1
                   && Count(nodes, "route:parts-requests") >= categories.Length && Count(nodes, "queue:audit") >= categories.Length;
        }, TimeSpan.FromSeconds(30));
        Assert.That(counted, Is.True, () => $"graph counts: {string.Join(", ", nodes.Values.Select(n => $"{n.GetProperty("id")}={n.GetProperty("count")}"))}");

        Assert.Multiple(() =>
        {
            Assert.That(Count(nodes, "route:parts-requests"), Is.EqualTo(categories.Length), "every message into the route");
            Assert.That(Count(nodes, "queue:audit"), Is.EqualTo(categories.Length), "the wire tap copied each");
            Assert.That(Count(nodes, "queue:parts-requests-discarded"), Is.Zero);
            Assert.That(nodes.Keys, Is.SupersetOf(new[] { "step:parts-requests:1", "queue:parts-requests_error", "saga:order-fulfillment",
                "state:order-fulfillment:Reserving", "state:order-fulfillment:AwaitingApproval", "state:order-fulfillment:Failed" }), "drawn from the definitions");
            var links = graph.GetProperty("links").EnumerateArray().ToList();
            var electronics = links.Single(l => l.GetProperty("target").GetString() == "queue:parts-electronics");
            Assert.That(electronics.GetProperty("label").GetString(), Is.EqualTo("electronics"));
            Assert.That(electronics.GetProperty("count").GetInt64(), Is.EqualTo(3));
            Assert.That(links.Any(l => l.GetProperty("kind").GetString() == "transition" && l.GetProperty("label").GetString() == "Approved"
                && l.GetProperty("source").GetString() == "state:order-fulfillment:AwaitingApproval"), Is.True, "the saga's transitions");
            Assert.That(graph.GetProperty("data").GetProperty("nodes").GetArrayLength(), Is.EqualTo(nodes.Count));
        });

        // The history is sampled every second into each node's ring buffer: it catches up with the count.
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            var (_, body) = await _host.Send(HttpMethod.Get, "/api/control/graph", ControlHost.ViewerKey);
            var history = Nodes(body)["queue:parts-electronics"].GetProperty("history").EnumerateArray().Select(h => h.GetInt64()).ToList();
            return history.Count > 0 && history[^1] == 3;
        }, TimeSpan.FromSeconds(15)), Is.True, "sparkline history");
    }

    [Test]
    public async Task When_an_order_runs_should_count_the_saga_transitions()
    {
        var orderId = await new OrdersClient(_host.Client).Submit(("PUMP-1", 1));
        await new OrdersClient(_host.Client).WaitFor(orderId, "Completed");

        var (_, graph) = await _host.Send(HttpMethod.Get, "/api/control/graph", ControlHost.ViewerKey);
        var links = graph.GetProperty("links").EnumerateArray().Where(l => l.GetProperty("kind").GetString() == "transition").ToList();
        long Transition(string from, string @event) => links.Single(l => l.GetProperty("source").GetString() == $"state:order-fulfillment:{from}"
            && l.GetProperty("label").GetString() == @event).GetProperty("count").GetInt64();
        Assert.Multiple(() =>
        {
            Assert.That(Transition("Initial", "Submitted"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Transition("UpdatingInventory", "InventoryUpdated"), Is.GreaterThanOrEqualTo(1));
            Assert.That(Count(Nodes(graph), "state:order-fulfillment:Completed"), Is.GreaterThanOrEqualTo(1), "instances in the state");
        });
    }
}
