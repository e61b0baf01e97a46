using Integration.Patterns.Endpoints;
using Integration.Patterns.Envelope;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Envelope_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_an_envelope_is_declared_should_carry_its_headers_and_correlation_on_what_is_sent()
    {
        var correlation = Guid.NewGuid();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Envelope(e => e.Header("Order-Kind", o => o.Kind).CorrelateBy(_ => correlation).Priority(_ => 7))
                .To("orders-out")),
            ["orders-out"]);

        await harness.Send("orders", new Order("1", "rush", 1));

        var routed = (await harness.WaitFor("orders-out")).Single();
        Assert.That(routed.Headers.Get<string>("Order-Kind"), Is.EqualTo("rush"));
        Assert.That(routed.Headers.Get<string>("Integration-Priority"), Is.EqualTo("7"));
        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Context.CorrelationId == correlation), Is.True);
    }
}
