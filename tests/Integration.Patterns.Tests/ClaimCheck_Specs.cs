using Integration.Patterns.Postgres.ClaimCheck;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Routing;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory), Category = "Integration")]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class ClaimCheck_Specs<TTransport>
    where TTransport : ITransport, new()
{
    TestDatabase _database = null!;

    [SetUp]
    public async Task CreateDatabase() => _database = await PatternDatabase.CreateAsync();

    [TearDown]
    public async Task DropDatabase() => await _database.DisposeAsync();

    Task<long> Claims() => PatternDatabase.CountAsync(_database, "SELECT count(*) AS \"Value\" FROM integration_claims");

    [Test]
    public async Task When_checked_in_should_put_only_a_ticket_on_the_wire_and_keep_the_payload_in_postgres()
    {
        await using var harness = await RouteHarness<ClaimTicket>.StartAsync(new TTransport(),
            routes => routes.From<Document>("documents", r => r.CheckIn().To("tickets")),
            ["tickets"], services: PatternDatabase.Store(_database));

        await harness.Send("documents", new Document("d1", new string('x', 200_000)));

        var ticket = (await harness.WaitFor("tickets")).Single().Message;
        Assert.That(ticket.MessageType, Is.EqualTo(typeof(Document).FullName));
        Assert.That(ticket.Bytes, Is.GreaterThan(200_000));
        Assert.That(await Claims(), Is.EqualTo(1));
    }

    [Test]
    public async Task When_checked_out_should_restore_the_payload_and_remove_the_claim()
    {
        await using var harness = await RouteHarness<Document>.StartAsync(new TTransport(),
            routes => routes
                .From<Document>("documents", r => r.CheckIn().To("tickets"))
                .From<ClaimTicket>("tickets", r => r.CheckOut<Document>().To("documents-out")),
            ["documents-out"], services: PatternDatabase.Store(_database));

        var text = new string('y', 100_000);
        await harness.Send("documents", new Document("d2", text));

        var document = (await harness.WaitFor("documents-out")).Single().Message;
        Assert.That(document, Is.EqualTo(new Document("d2", text)));
        Assert.That(await Eventually.TrueAsync(async () => await Claims() == 0, TimeSpan.FromSeconds(10)), Is.True, "a checked-out claim is removed");
    }

    [Test]
    public async Task When_the_claim_is_missing_should_fault_the_ticket_with_the_reason()
    {
        await using var harness = await RouteHarness<Document>.StartAsync(new TTransport(),
            routes => routes.From<ClaimTicket>("tickets", r => r.CheckOut<Document>().To("documents-out")),
            ["documents-out"], services: PatternDatabase.Store(_database));

        var missing = Guid.NewGuid();
        await harness.Send("tickets", new ClaimTicket(missing, typeof(Document).FullName!, 10));

        Assert.That(await harness.Harness.Consumed.Any<ClaimTicket>(x =>
            x.Exception is ClaimNotFoundException e && e.Message.Contains($"claim {missing}") && e.Message.Contains("is not in the claim store")), Is.True);
        Assert.That(await harness.QueueHolds("tickets_error", 1), Is.True, "the ticket is parked in the error queue");
        Assert.That(harness.At("documents-out"), Is.Empty);
    }

    [Test]
    public async Task When_the_ticket_names_another_type_should_fault_it()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes
                .From<Document>("documents", r => r.CheckIn().To("tickets"))
                .From<ClaimTicket>("tickets", r => r.CheckOut<Order>().To("orders-out")),
            ["orders-out"], services: PatternDatabase.Store(_database));

        await harness.Send("documents", new Document("d3", "z"));

        Assert.That(await harness.Harness.Consumed.Any<ClaimTicket>(x => x.Exception is ClaimNotFoundException e && e.Message.Contains("not a")), Is.True);
    }

    [Test]
    public void When_no_store_is_registered_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<ClaimTicket>.StartAsync(new TTransport(),
                routes => routes.From<Document>("documents", r => r.CheckIn().To("tickets")), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'documents', step 1 (CheckIn): keeps its state in PostgreSQL"));
    }
}
