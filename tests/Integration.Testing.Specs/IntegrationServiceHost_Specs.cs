using System.Collections.Concurrent;
using Integration.Outbox;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Testing.Specs;

public sealed class Ticket
{
    public Guid Id { get; set; }
    public string Title { get; set; } = "";
}

public sealed record TicketOpened(Guid TicketId, string Title);

/// <summary>A user's own DbContext: a business table and the outbox's tables.</summary>
public sealed class TicketDbContext(DbContextOptions<TicketDbContext> options) : DbContext(options)
{
    public DbSet<Ticket> Tickets => Set<Ticket>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Ticket>().ToTable("tickets");
        modelBuilder.AddIntegrationOutbox();
    }
}

public sealed class TicketsSeen
{
    public ConcurrentQueue<(string Host, TicketOpened Ticket)> Received { get; } = new();
}

public sealed class TicketOpenedConsumer(TicketsSeen seen, HostName name) : IConsumer<TicketOpened>
{
    public Task Consume(ConsumeContext<TicketOpened> context)
    {
        seen.Received.Enqueue((name.Value, context.Message));
        return Task.CompletedTask;
    }
}

public sealed record HostName(string Value);

[TestFixture, Category("Integration")]
public sealed class IntegrationServiceHost_Specs
{
    // The registration a test writes for its own host: a DbContext, the outbox, a consumer, RabbitMQ.
    static Task<IntegrationServiceHost> StartTicketsAsync(TicketsSeen seen, string name, Action<IntegrationServiceHostOptions>? options = null) =>
        IntegrationServiceHost.StartAsync(h =>
        {
            h.Services.AddSingleton(seen).AddSingleton(new HostName(name));
            h.Services.AddDbContext<TicketDbContext>(o => o.UseNpgsql(h.Database.ConnectionString));
            h.Services.AddIntegrationOutbox<TicketDbContext>();
            h.Services.AddMassTransit(x =>
            {
                x.AddConsumer<TicketOpenedConsumer>().Endpoint(e => e.Name = "tickets");
                x.UsingRabbitMq((context, cfg) =>
                {
                    h.Broker.ConfigureHost(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            });
        }, options);

    static async Task OpenAsync(IntegrationServiceHost host, string title)
    {
        await using var scope = host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TicketDbContext>();
        var ticket = new Ticket { Id = Guid.NewGuid(), Title = title };
        db.Tickets.Add(ticket);
        scope.ServiceProvider.GetRequiredService<IOutbox>().Publish(new TicketOpened(ticket.Id, title));
        await db.SaveChangesAsync();
    }

    [Test]
    public async Task When_a_service_collection_is_started_should_create_its_tables_and_deliver_through_its_outbox()
    {
        var seen = new TicketsSeen();
        await using var host = await StartTicketsAsync(seen, "a");

        await OpenAsync(host, "pump 7 leaks");
        await host.Outbox.WaitUntilDeliveredAsync();

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(seen.Received.Any(r => r.Ticket.Title == "pump 7 leaks")), TimeSpan.FromSeconds(30)),
            Is.True, "the ticket published through the outbox never reached its consumer");
        Assert.That(host.DbContextTypes, Is.EqualTo(new[] { typeof(TicketDbContext) }));
        Assert.That(host.Settings["Integration:Postgres:ConnectionString"], Is.EqualTo(host.Database.ConnectionString));
    }

    [Test]
    public async Task When_two_hosts_share_a_broker_and_database_should_compete_for_one_queue_and_leave_both_to_the_test()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("shared");
        await using var database = await infrastructure.CreateDatabaseAsync("shared");
        var seen = new TicketsSeen();

        await using (var first = await StartTicketsAsync(seen, "first", o => (o.Broker, o.Database) = (broker, database)))
        await using (var second = await StartTicketsAsync(seen, "second", o => (o.Broker, o.Database) = (broker, database)))
        {
            for (var i = 0; i < 20; i++)
                await OpenAsync(i % 2 == 0 ? first : second, $"ticket {i}");
            await first.Outbox.WaitUntilDeliveredAsync();

            Assert.That(await Eventually.TrueAsync(() => Task.FromResult(seen.Received.Count >= 20), TimeSpan.FromSeconds(30)), Is.True,
                () => $"received {seen.Received.Count} of 20");
        }

        Assert.That(seen.Received.Select(r => r.Ticket.Title).Distinct().Count(), Is.EqualTo(20), "a ticket was delivered twice");
        Assert.That(await broker.QueueMessageCountAsync("tickets"), Is.Not.Null, "a shared virtual host must outlive the hosts that used it");
    }

    [Test]
    public async Task When_the_host_fails_to_start_should_clean_up_its_virtual_host_and_database_and_say_why()
    {
        var prefix = "svcfail" + Guid.NewGuid().ToString("N")[..5];

        var failure = Assert.CatchAsync(() => IntegrationServiceHost.StartAsync(h =>
            h.Services.AddMassTransit(x => x.UsingRabbitMq((context, cfg) =>
            {
                h.Broker.ConfigureHost(cfg);
                cfg.ReceiveEndpoint("broken", e => throw new InvalidOperationException("endpoint 'broken' is misconfigured"));
            })), o => o.NamePrefix = prefix));

        var infrastructure = await IntegrationInfrastructure.GetAsync();
        var messages = new List<string>();
        for (var e = failure; e is not null; e = e.InnerException)
            messages.Add(e.Message);
        Assert.Multiple(async () =>
        {
            Assert.That(string.Join(" | ", messages), Does.Contain("endpoint 'broken' is misconfigured"));
            Assert.That(await IntegrationTestHost_Specs.VirtualHostsAsync(infrastructure, prefix), Is.Empty, "virtual hosts left behind");
            Assert.That(await IntegrationTestHost_Specs.DatabasesAsync(infrastructure, prefix), Is.Empty, "databases left behind");
        });
    }
}
