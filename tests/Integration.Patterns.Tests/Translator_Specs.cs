using Integration.Patterns.ContentRouting;
using Integration.Patterns.Endpoints;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using Integration.Patterns.Transformation;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Translator_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_translated_should_route_the_canonical_message_with_the_whole_history()
    {
        await using var harness = await RouteHarness<CanonicalOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Translate(o => new CanonicalOrder(o.Id, o.Kind.ToUpperInvariant(), o.Amount))
                .Route(c => c.When(o => o.Category == "PRIORITY", "canonical-priority").Otherwise("canonical-other"))),
            ["canonical-priority", "canonical-other"]);

        await harness.Send("orders", new Order("7", "priority", 3));

        var routed = (await harness.WaitFor("canonical-priority")).Single();
        Assert.That(routed.Message, Is.EqualTo(new CanonicalOrder("7", "PRIORITY", 3)));
        Assert.That(MessageHistory.Read(routed.Headers).Select(e => e.Step), Is.EqualTo(new[] { "translate:CanonicalOrder", "route:router" }));
    }

    [Test]
    public async Task When_the_translation_throws_should_fault_the_message()
    {
        await using var harness = await RouteHarness<CanonicalOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Translate<Order, CanonicalOrder>(o => throw new FormatException($"order {o.Id} cannot be read"))
                .To("canonical-other")),
            ["canonical-other"]);

        await harness.Send("orders", new Order("8", "x", 1));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Exception is FormatException), Is.True);
        Assert.That(harness.At("canonical-other"), Is.Empty);
    }

    [Test]
    public void When_a_step_follows_a_terminal_step_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<CanonicalOrder>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.To("a").To("b")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders', step 1 (To): the message ends here"));
    }
}
