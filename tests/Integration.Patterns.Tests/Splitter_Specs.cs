using Integration.Patterns.Endpoints;
using Integration.Patterns.History;
using Integration.Patterns.Splitting;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Splitter_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_a_message_is_split_should_send_every_part_with_its_place_in_the_sequence()
    {
        await using var harness = await RouteHarness<Item>.StartAsync(new TTransport(),
            routes => routes.From<Batch>("batches", r => r
                .Split(b => b.Skus.Select(s => new Item(b.Id, s)))
                .To("items")),
            ["items"]);

        await harness.Send("batches", new Batch("b1", ["A", "B", "C"]));

        var parts = (await harness.WaitFor("items", 3)).OrderBy(p => MessageSequence.Read(p.Headers)!.Index).ToList();
        Assert.That(parts.Select(p => p.Message.Sku), Is.EqualTo(new[] { "A", "B", "C" }));
        var sequences = parts.Select(p => MessageSequence.Read(p.Headers)!).ToList();
        Assert.That(sequences.Select(s => s.Index), Is.EqualTo(new[] { 0, 1, 2 }));
        Assert.That(sequences.Select(s => s.Size).Distinct(), Is.EqualTo(new[] { 3 }));
        Assert.That(sequences.Select(s => s.Id).Distinct().Count(), Is.EqualTo(1));
        foreach (var part in parts)
            Assert.That(MessageHistory.Read(part.Headers).Select(e => e.Step), Is.EqualTo(new[] { "split:Item", "to:items" }), "each part has its own history");
    }

    [Test]
    public async Task When_the_split_function_throws_should_fault_the_message_and_send_nothing()
    {
        await using var harness = await RouteHarness<Item>.StartAsync(new TTransport(),
            routes => routes.From<Batch>("batches", r => r
                .Split<Batch, Item>(b => throw new FormatException($"batch {b.Id} is unreadable"))
                .To("items")),
            ["items"]);

        await harness.Send("batches", new Batch("b2", ["A"]));

        Assert.That(await harness.Harness.Consumed.Any<Batch>(x => x.Exception is FormatException), Is.True);
        Assert.That(harness.At("items"), Is.Empty);
    }

    [Test]
    public void When_the_split_function_is_missing_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<Routing.RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Item>.StartAsync(new TTransport(),
                routes => routes.From<Batch>("batches", r => r.Split<Batch, Item>(null!).To("items")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'batches', step 1 (Split): the split function is missing"));
    }
}
