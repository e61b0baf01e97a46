using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Postgres.Resequencing;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>Two services (two buses) consuming the same queue on the real broker, sharing one database.</summary>
[TestFixture(Category = "Integration")]
public sealed class AggregatorConsumers_Specs
{
    TestDatabase _database = null!;

    [SetUp]
    public async Task CreateDatabase() => _database = await PatternDatabase.CreateAsync();

    [TearDown]
    public async Task DropDatabase() => await _database.DisposeAsync();

    [Test]
    public async Task When_two_services_add_to_the_same_groups_should_complete_each_group_once_with_every_message()
    {
        static void Routes(Routing.IRouteBuilder routes) => routes.From<Item>("items", r => r.Aggregate(
            a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(20),
            g => new Assembled(g.Key, g.Messages.Select(m => m.Sku).ToArray(), g.CompletedBy.ToString()), to: "assembled"),
            e => e.ConcurrentMessageLimit = 8);

        var first = new RabbitMq();
        await using var one = await RouteHarness<Assembled>.StartAsync(first, Routes, ["assembled"], services: PatternDatabase.Store(_database));
        await using var two = await RouteHarness<Assembled>.StartAsync(new RabbitMq(first), Routes, [], services: PatternDatabase.Store(_database));

        await Task.WhenAll(Enumerable.Range(0, 60).Select(i => (i % 2 == 0 ? one : two).Send("items", new Item($"g{i % 3}", $"S{i:00}"))));

        var results = await one.WaitFor("assembled", 3, seconds: 30);
        Assert.That(results.Select(r => r.Message.Key).Order(), Is.EqualTo(new[] { "g0", "g1", "g2" }));
        Assert.That(results.SelectMany(r => r.Message.Skus).Order(), Is.EqualTo(Enumerable.Range(0, 60).Select(i => $"S{i:00}")));
        Assert.That(await first.Broker.QueueMessageCountAsync("items_error") ?? 0, Is.Zero, "no lock conflict failed a message");
    }

    [Test]
    public async Task When_the_service_restarts_mid_stream_should_release_the_held_messages_once_the_gap_is_filled()
    {
        static void Routes(Routing.IRouteBuilder routes) => routes.From<Item>("items", r => r.Resequence(
            s => s.CorrelateBy(i => i.BatchId).SequenceBy(i => long.Parse(i.Sku[1..], System.Globalization.CultureInfo.InvariantCulture)).Stream(TimeSpan.FromMinutes(5)),
            to: "ordered"));

        await using (var before = await RouteHarness<Item>.StartAsync(new RabbitMq(), Routes, ["ordered"], services: PatternDatabase.Store(_database)))
        {
            await before.Send("items", new Item("s", "S2"));
            await before.Send("items", new Item("s", "S1"));
            Assert.That(await Eventually.TrueAsync(async () => await PatternDatabase.CountAsync(_database,
                "SELECT count(*) AS \"Value\" FROM integration_aggregation_messages") == 2, TimeSpan.FromSeconds(10)), Is.True);
            Assert.That(before.At("ordered"), Is.Empty, "held until position 0 arrives");
        }

        await using var after = await RouteHarness<Item>.StartAsync(new RabbitMq(), Routes, ["ordered"], services: PatternDatabase.Store(_database));
        await after.Send("items", new Item("s", "S0"));

        var ordered = await after.WaitFor("ordered", 3);
        Assert.That(ordered.Select(o => o.Message.Sku).ToArray(), Is.EqualTo(new[] { "S0", "S1", "S2" }));
    }
}
