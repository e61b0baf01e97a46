using Integration.Patterns.Postgres.Resequencing;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory), Category = "Integration")]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Resequencer_Specs<TTransport>
    where TTransport : ITransport, new()
{
    TestDatabase _database = null!;

    [SetUp]
    public async Task CreateDatabase() => _database = await PatternDatabase.CreateAsync();

    [TearDown]
    public async Task DropDatabase() => await _database.DisposeAsync();

    static long Position(Item item) => long.Parse(item.Sku[1..], System.Globalization.CultureInfo.InvariantCulture);

    Task<RouteHarness<Item>> Start(Action<IResequencerConfigurator<Item>> configure) =>
        RouteHarness<Item>.StartAsync(new TTransport(),
            routes => routes.From<Item>("items", r => r.Resequence(s =>
            {
                s.CorrelateBy(i => i.BatchId).SequenceBy(Position);
                s.PollInterval = TimeSpan.FromMilliseconds(200);
                configure(s);
            }, to: "ordered")),
            ["ordered", "items_error"], services: PatternDatabase.Store(_database));

    async Task SendInOrder(RouteHarness<Item> harness, string batch, params int[] positions)
    {
        foreach (var position in positions)
            await harness.Send("items", new Item(batch, $"S{position}"));
    }

    [Test]
    public async Task When_a_batch_is_complete_should_release_its_messages_in_sequence_order()
    {
        await using var harness = await Start(s => s.Batch(TimeSpan.FromSeconds(30), size: 4));

        await SendInOrder(harness, "b", 3, 1, 0, 2);

        var ordered = await harness.WaitFor("ordered", 4);
        Assert.That(ordered.Select(o => o.Message.Sku).ToArray(), Is.EqualTo(new[] { "S0", "S1", "S2", "S3" }));
        Assert.That(ordered.Select(o => MessageSequence.Read(o.Headers)!.Index).ToArray(), Is.EqualTo(new[] { 0, 1, 2, 3 }));
    }

    [Test]
    public async Task When_a_batch_times_out_should_release_what_it_has_in_order()
    {
        await using var harness = await Start(s => s.Batch(TimeSpan.FromSeconds(1), size: 10));

        await SendInOrder(harness, "t", 5, 2);

        var ordered = await harness.WaitFor("ordered", 2);
        Assert.That(ordered.Select(o => o.Message.Sku).ToArray(), Is.EqualTo(new[] { "S2", "S5" }));
    }

    [Test]
    public async Task When_a_stream_arrives_out_of_order_should_release_each_message_once_its_predecessors_went()
    {
        await using var harness = await Start(s => s.Stream(TimeSpan.FromSeconds(30)));

        await SendInOrder(harness, "s", 2, 0, 1, 4, 3);

        var ordered = await harness.WaitFor("ordered", 5);
        Assert.That(ordered.Select(o => o.Message.Sku).ToArray(), Is.EqualTo(new[] { "S0", "S1", "S2", "S3", "S4" }));
        Assert.That(ordered.Select(o => o.Headers.Get<string>(ResequencerHeaders.Position)).ToArray(), Is.EqualTo(new[] { "0", "1", "2", "3", "4" }));
    }

    [Test]
    public async Task When_a_gap_is_not_filled_in_time_should_skip_it_and_fault_the_latecomer()
    {
        await using var harness = await Start(s => s.Stream(TimeSpan.FromSeconds(1)));

        await SendInOrder(harness, "g", 0, 2);
        Assert.That((await harness.WaitFor("ordered", 1)).Single().Message.Sku, Is.EqualTo("S0"));

        var ordered = await harness.WaitFor("ordered", 2);
        Assert.That(ordered.Select(o => o.Message.Sku).ToArray(), Is.EqualTo(new[] { "S0", "S2" }));

        await SendInOrder(harness, "g", 1);
        // The error queue itself is captured: the harness's inactivity window has passed while the gap timed out.
        var parked = (await harness.WaitFor("items_error")).Single();
        Assert.That(parked.Message.Sku, Is.EqualTo("S1"));
        Assert.That(parked.Transport!.Get<string>("MT-Fault-Message"), Does.Contain("already released or skipped position 1"));
    }

    [Test]
    public void When_both_modes_are_chosen_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await Start(s => s.Batch(TimeSpan.FromSeconds(1)).Stream(TimeSpan.FromSeconds(1)));
        });

        Assert.That(failure!.Message, Does.Contain("Route 'items', step 1 (Resequence): choose one mode, not Batch and Stream"));
    }
}
