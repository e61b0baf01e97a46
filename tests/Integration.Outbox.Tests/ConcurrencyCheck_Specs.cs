using Integration.Outbox.Writing;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

/// <summary>
/// A save that loses an optimistic concurrency check writes nothing: not its business rows and not its outbox messages.
/// EF Core sees the lost check only after the statements ran (the UPDATE matched no row, which is no database error), so
/// the save must be in a transaction that is rolled back, never in a command whose implicit transaction has committed.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class ConcurrencyCheck_Specs
{
    TestBroker _broker = null!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task Resources()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("outbox-concurrency");
        _database = await infrastructure.CreateDatabaseAsync("outbox_concurrency");
    }

    [TearDown]
    public async Task Release()
    {
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task When_a_save_with_outbox_messages_loses_its_concurrency_check_should_commit_none_of_them(bool directDelivery)
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = directDelivery);
        var id = Guid.NewGuid();
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            db.Stock.Add(new Stock { Id = id, Quantity = 10 });
            await db.SaveChangesAsync();
        }

        await using var loser = host.Services.CreateAsyncScope();
        var stale = loser.ServiceProvider.GetRequiredService<ShopDbContext>();
        var stock = await stale.Stock.SingleAsync(s => s.Id == id);

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            (await db.Stock.SingleAsync(s => s.Id == id)).Quantity = 9;
            await db.SaveChangesAsync();
        }

        stock.Quantity = 8;
        var messageId = loser.ServiceProvider.GetRequiredService<IOutbox>().Publish(new WidgetCreated(id, "lost", 8));
        Assert.ThrowsAsync<DbUpdateConcurrencyException>(() => stale.SaveChangesAsync());

        Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM outbox_messages WHERE message_id = '{messageId}'"), Is.Zero,
            "the outbox message of a save that lost its concurrency check was committed");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(host.Received.ByMessageId.ContainsKey(messageId), Is.False, "the message of a failed save was delivered");
        Assert.That(await host.CountAsync($"SELECT \"Quantity\"::bigint AS \"Value\" FROM stock WHERE \"Id\" = '{id}'"), Is.EqualTo(9));
    }
}
