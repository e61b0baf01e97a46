using Integration.Patterns.Endpoints;
using Integration.Patterns.Enrichment;
using Integration.Patterns.Routing;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class ContentEnricher_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static readonly Dictionary<string, string> Regions = new() { ["acme"] = "north" };

    [Test]
    public async Task When_the_lookup_finds_data_should_continue_with_the_enriched_message()
    {
        await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Enrich((Order o, CancellationToken _) => Task.FromResult(Regions[o.Customer!]), (o, region) => new EnrichedOrder(o.Id, o.Customer, region))
                .To("orders-enriched")),
            ["orders-enriched"]);

        await harness.Send("orders", new Order("1", "x", 1, "acme"));

        Assert.That((await harness.WaitFor("orders-enriched")).Single().Message, Is.EqualTo(new EnrichedOrder("1", "acme", "north")));
    }

    [Test]
    public async Task When_the_lookup_takes_too_long_should_fault_the_message_with_the_timeout()
    {
        await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Enrich(async (Order _, CancellationToken token) =>
                {
                    await Task.Delay(Timeout.Infinite, token);
                    return "never";
                }, (o, region) => new EnrichedOrder(o.Id, o.Customer, region), timeout: TimeSpan.FromMilliseconds(200))
                .To("orders-enriched")),
            ["orders-enriched"]);

        await harness.Send("orders", new Order("2", "x", 1, "acme"));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Exception is EnrichmentException e && e.Message.Contains("the lookup timed out after 0.2 s")), Is.True);
        Assert.That(await harness.QueueHolds("orders_error", 1), Is.True, "not dropped: parked in the error queue");
        Assert.That(harness.At("orders-enriched"), Is.Empty);
    }

    [Test]
    public async Task When_the_lookup_fails_should_fault_the_message_with_the_reason()
    {
        await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .Enrich((Order o, CancellationToken _) => Task.FromResult(Regions[o.Customer!]), (o, region) => new EnrichedOrder(o.Id, o.Customer, region))
                .To("orders-enriched")),
            ["orders-enriched"]);

        await harness.Send("orders", new Order("3", "x", 1, "unknown"));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Exception is EnrichmentException e && e.Message.Contains("the lookup failed")), Is.True);
    }

    [Test]
    public async Task When_the_service_answers_the_request_should_continue_with_the_enriched_message()
    {
        await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .EnrichByRequest<Order, CustomerQuery, CustomerInfo, EnrichedOrder>("customers", o => new CustomerQuery(o.Customer!),
                    (o, info) => new EnrichedOrder(o.Id, o.Customer, info.Region))
                .To("orders-enriched")),
            ["orders-enriched"],
            cfg => cfg.ReceiveEndpoint("customers", e => e.Handler<CustomerQuery>(c => c.RespondAsync(new CustomerInfo(c.Message.Customer, "south")))));

        await harness.Send("orders", new Order("4", "x", 1, "globex"));

        Assert.That((await harness.WaitFor("orders-enriched")).Single().Message, Is.EqualTo(new EnrichedOrder("4", "globex", "south")));
    }

    [Test]
    public async Task When_the_service_does_not_answer_in_time_should_fault_the_message_with_the_timeout()
    {
        await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                .EnrichByRequest<Order, CustomerQuery, CustomerInfo, EnrichedOrder>("customers", o => new CustomerQuery(o.Customer!),
                    (o, info) => new EnrichedOrder(o.Id, o.Customer, info.Region), timeout: TimeSpan.FromMilliseconds(500))
                .To("orders-enriched")),
            ["orders-enriched"],
            cfg => cfg.ReceiveEndpoint("customers", e => e.Handler<CustomerQuery>(_ => Task.CompletedTask)));

        await harness.Send("orders", new Order("5", "x", 1, "globex"));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x => x.Exception is EnrichmentException e && e.Message.Contains("the request to 'customers' timed out")), Is.True);
        Assert.That(await harness.QueueHolds("orders_error", 1), Is.True);
    }

    [Test]
    public void When_the_timeout_is_not_positive_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<EnrichedOrder>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r
                    .Enrich((Order _, CancellationToken _) => Task.FromResult("x"), (o, region) => new EnrichedOrder(o.Id, o.Customer, region), timeout: TimeSpan.Zero)
                    .To("orders-enriched")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders', step 1 (Enrich): timeout must be positive"));
    }
}
