using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory), Category = "Integration")]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Aggregator_Specs<TTransport>
    where TTransport : ITransport, new()
{
    TestDatabase _database = null!;

    [SetUp]
    public async Task CreateDatabase() => _database = await PatternDatabase.CreateAsync();

    [TearDown]
    public async Task DropDatabase() => await _database.DisposeAsync();

    static Assembled Assemble(AggregatedGroup<Item> g) => new(g.Key, g.Messages.Select(m => m.Sku).ToArray(), g.CompletedBy.ToString());

    Task<RouteHarness<Assembled>> Start(Action<IAggregatorConfigurator<Item>> completion, Action<RouteEndpointOptions>? endpoint = null) =>
        RouteHarness<Assembled>.StartAsync(new TTransport(),
            routes => routes
                .From<Batch>("batches", r => r.Split(b => b.Skus.Select(s => new Item(b.Id, s))).To("items"))
                .From<Item>("items", r => r.Aggregate(completion, Assemble, to: "assembled"), endpoint),
            ["assembled"], services: PatternDatabase.Store(_database));

    Task<long> Stored(string table) => PatternDatabase.CountAsync(_database, $"SELECT count(*) AS \"Value\" FROM {table}");

    [Test]
    public async Task When_every_part_of_a_split_arrived_should_send_one_aggregate_in_sequence_order_completed_by_size()
    {
        await using var harness = await Start(a => a.CompleteOnSequenceSize());

        await harness.Send("batches", new Batch("b1", ["A", "B", "C", "D"]));

        var result = (await harness.WaitFor("assembled")).Single();
        Assert.That(result.Message.Skus, Is.EqualTo(new[] { "A", "B", "C", "D" }));
        Assert.That(result.Message.CompletedBy, Is.EqualTo("Size"));
        Assert.That(result.Headers.Get<string>(AggregatorExtensions.CompletedByHeader), Is.EqualTo("Size"));
        Assert.That(result.Headers.Get<string>(AggregatorExtensions.CountHeader), Is.EqualTo("4"));
        Assert.That(MessageSequence.Read(result.Headers), Is.Null, "the aggregate is not a part of the sequence");
    }

    [Test]
    public async Task When_many_consumers_add_to_one_group_at_once_should_aggregate_every_message_exactly_once()
    {
        await using var harness = await RouteHarness<Assembled>.StartAsync(new TTransport(),
            routes => routes.From<Item>("items", r => r.Aggregate(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(30), Assemble, to: "assembled"),
                e => e.ConcurrentMessageLimit = 16),
            ["assembled"], services: PatternDatabase.Store(_database));

        await Task.WhenAll(Enumerable.Range(0, 30).Select(i => harness.Send("items", new Item("g", $"S{i:00}"))));

        var result = (await harness.WaitFor("assembled", seconds: 30)).Single();
        Assert.That(result.Message.Skus.Order(), Is.EqualTo(Enumerable.Range(0, 30).Select(i => $"S{i:00}")));
        await Task.Delay(300);
        Assert.That(harness.At("assembled"), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task When_the_timeout_passes_first_should_send_what_the_group_has_completed_by_timeout()
    {
        await using var harness = await Start(a =>
        {
            a.CorrelateBy(i => i.BatchId).CompleteOnSize(10).CompleteAfter(TimeSpan.FromSeconds(1));
            a.PollInterval = TimeSpan.FromMilliseconds(200);
        });

        await harness.Send("items", new Item("t", "A"));
        await harness.Send("items", new Item("t", "B"));

        var result = (await harness.WaitFor("assembled")).Single();
        Assert.That(result.Message.Skus.Order(), Is.EqualTo(new[] { "A", "B" }));
        Assert.That(result.Message.CompletedBy, Is.EqualTo("Timeout"));
        Assert.That(result.Headers.Get<string>(AggregatorExtensions.CompletedByHeader), Is.EqualTo("Timeout"));
    }

    [Test]
    public async Task When_the_predicate_holds_should_complete_the_group_by_predicate()
    {
        await using var harness = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteWhen(items => items.Any(i => i.Sku == "END")));

        await harness.Send("items", new Item("p", "A"));
        await Eventually.TrueAsync(async () => await Stored("integration_aggregation_messages") == 1, TimeSpan.FromSeconds(10));
        await harness.Send("items", new Item("p", "END"));

        var result = (await harness.WaitFor("assembled")).Single();
        Assert.That(result.Message.Skus, Is.EqualTo(new[] { "A", "END" }));
        Assert.That(result.Message.CompletedBy, Is.EqualTo("Predicate"));
    }

    [Test]
    public async Task When_the_service_restarts_mid_group_should_complete_the_group_with_the_messages_from_before()
    {
        await using (var before = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(3)))
        {
            await before.Send("items", new Item("r", "A"));
            await before.Send("items", new Item("r", "B"));
            Assert.That(await Eventually.TrueAsync(async () => await Stored("integration_aggregation_messages") == 2, TimeSpan.FromSeconds(10)), Is.True);
        }

        await using var after = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(3));
        await after.Send("items", new Item("r", "C"));

        var result = (await after.WaitFor("assembled")).Single();
        Assert.That(result.Message.Skus.Order(), Is.EqualTo(new[] { "A", "B", "C" }));
    }

    [Test]
    public async Task When_a_group_times_out_while_the_service_is_down_should_complete_it_after_the_restart()
    {
        void Completion(IAggregatorConfigurator<Item> a)
        {
            a.CorrelateBy(i => i.BatchId).CompleteOnSize(5).CompleteAfter(TimeSpan.FromSeconds(1));
            a.PollInterval = TimeSpan.FromMilliseconds(200);
        }

        await using (var before = await Start(Completion))
        {
            await before.Send("items", new Item("down", "A"));
            Assert.That(await Eventually.TrueAsync(async () => await Stored("integration_aggregation_messages") == 1, TimeSpan.FromSeconds(10)), Is.True);
        }

        await using var after = await Start(Completion);
        var result = (await after.WaitFor("assembled")).Single();
        Assert.That(result.Message.Skus, Is.EqualTo(new[] { "A" }));
        Assert.That(result.Message.CompletedBy, Is.EqualTo("Timeout"));
    }

    [Test]
    public async Task When_a_message_arrives_after_its_group_completed_should_fault_it_with_the_reason()
    {
        await using var harness = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(1));

        await harness.Send("items", new Item("late", "A"));
        await harness.WaitFor("assembled");
        await harness.Send("items", new Item("late", "B"));

        // Consumed.Any gives up after the harness's inactivity timeout: on a loaded machine the fault can come later than that.
        Assert.That(await Eventually.TrueAsync(() => harness.Harness.Consumed.Any<Item>(x => x.Exception is AggregationGroupClosedException e && e.Message.Contains("already completed by Size")),
            TimeSpan.FromSeconds(30)), Is.True);
        Assert.That(harness.At("assembled"), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task When_the_aggregation_fails_at_the_timeout_should_park_the_group_messages_in_the_error_queue_with_the_reason()
    {
        await using var harness = await RouteHarness<Item>.StartAsync(new TTransport(),
            routes => routes.From<Item>("items", r => r.Aggregate(a =>
            {
                a.CorrelateBy(i => i.BatchId).CompleteOnSize(10).CompleteAfter(TimeSpan.FromMilliseconds(500));
                a.PollInterval = TimeSpan.FromMilliseconds(200);
            }, Assembled (g) => throw new InvalidOperationException("no price list"), to: "assembled")),
            ["items_error"], services: PatternDatabase.Store(_database));

        await harness.Send("items", new Item("f", "A"));
        await harness.Send("items", new Item("f", "B"));

        var parked = await harness.WaitFor("items_error", 2);
        Assert.That(parked.Select(p => p.Message.Sku).Order(), Is.EqualTo(new[] { "A", "B" }));
        Assert.That(parked[0].Headers.Get<string>(AggregatorExtensions.FailureReasonHeader) ?? parked[0].Transport!.Get<string>(AggregatorExtensions.FailureReasonHeader),
            Does.Contain("the aggregation function failed for group 'f' at its timeout: no price list"));
    }

    [Test]
    public async Task When_groups_are_open_should_report_them_in_the_backlog_gauge()
    {
        await using (var before = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(5)))
        {
            await before.Send("items", new Item("open-1", "A"));
            await before.Send("items", new Item("open-2", "A"));
            Assert.That(await Eventually.TrueAsync(async () => await Stored("integration_aggregation_groups") == 2, TimeSpan.FromSeconds(10)), Is.True);
        }

        var backlog = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Name == "integration.pattern.backlog")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "store")
                    backlog[(string)tag.Value!] = value;
            }
        });
        listener.Start();

        await using var after = await Start(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(5));
        Assert.That(await Eventually.TrueAsync(() =>
        {
            listener.RecordObservableInstruments();
            return Task.FromResult(backlog.TryGetValue("items/aggregate:assembled", out var open) && open == 2);
        }, TimeSpan.FromSeconds(10)), Is.True, "the worker reports the open groups when it starts");
    }

    [Test]
    public void When_no_completion_is_configured_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await Start(a => a.CorrelateBy(i => i.BatchId));
        });

        Assert.That(failure!.Message, Does.Contain("Route 'items', step 1 (Aggregate): no completion"));
    }

    [Test]
    public void When_no_store_is_registered_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Assembled>.StartAsync(new TTransport(),
                routes => routes.From<Item>("items", r => r.Aggregate(a => a.CompleteOnSize(2), Assemble, to: "assembled")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'items', step 1 (Aggregate): keeps its state in PostgreSQL, but no store is registered"));
    }
}
