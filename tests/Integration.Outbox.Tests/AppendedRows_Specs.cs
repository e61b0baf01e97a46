using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

/// <summary>
/// A save whose other writes are all INSERTs carries its outbox rows in its own command, outside EF Core's change tracker;
/// they commit or roll back with the business rows exactly as tracked rows do, and a failed save keeps them for its retry.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class AppendedRows_Specs
{
    TestBroker _broker = null!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task Resources()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("outbox-appended");
        _database = await infrastructure.CreateDatabaseAsync("outbox_appended");
    }

    [TearDown]
    public async Task Release()
    {
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task When_a_save_only_inserts_should_write_its_messages_outside_the_tracker_and_deliver_each_once(bool directDelivery)
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = directDelivery);
        await using var scope = host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        var outbox = scope.ServiceProvider.GetRequiredService<IOutbox>();
        var ids = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            var widget = new Widget { Id = Guid.NewGuid(), Name = $"w{i}" };
            db.Widgets.Add(widget);
            ids.Add(outbox.Publish(new WidgetCreated(widget.Id, widget.Name, i)));
        }

        await db.SaveChangesAsync();

        Assert.That(db.ChangeTracker.Entries<OutboxMessage>(), Is.Empty, "the outbox rows went through the change tracker");
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(3));
        await Until(() => ids.All(host.Received.ByMessageId.ContainsKey), "all three messages delivered");
        Assert.That(ids.Select(id => host.Received.ByMessageId[id]), Is.All.EqualTo(1), "a message was delivered twice");
        Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(new[] { 0, 1, 2 }), "not delivered in write order");
        await Until(async () => await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL") == 0,
            "the delivered rows were not marked");
    }

    [Test]
    public async Task When_the_save_fails_should_write_no_message_and_write_it_once_when_the_save_is_retried()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = true);
        var taken = Guid.NewGuid();
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            db.Widgets.Add(new Widget { Id = taken, Name = "first" });
            await db.SaveChangesAsync();
        }

        await using var writer = host.Services.CreateAsyncScope();
        var context = writer.ServiceProvider.GetRequiredService<ShopDbContext>();
        var duplicate = new Widget { Id = taken, Name = "duplicate" };
        context.Widgets.Add(duplicate);
        var messageId = writer.ServiceProvider.GetRequiredService<IOutbox>().Publish(new WidgetCreated(taken, "duplicate", 1));

        Assert.ThrowsAsync<DbUpdateException>(() => context.SaveChangesAsync());
        Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM outbox_messages WHERE message_id = '{messageId}'"), Is.Zero,
            "the message of a failed save was written");
        Assert.That(context.ChangeTracker.Entries<OutboxMessage>().Select(e => e.State), Is.EqualTo(new[] { EntityState.Added }),
            "the failed save did not keep its message for the retry");

        context.Entry(duplicate).State = EntityState.Detached;
        context.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "retried" });
        await context.SaveChangesAsync();

        await Until(() => host.Received.ByMessageId.ContainsKey(messageId), "the retried save's message delivered");
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.That(host.Received.ByMessageId[messageId], Is.EqualTo(1));
        Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM outbox_messages WHERE message_id = '{messageId}'"), Is.LessThanOrEqualTo(1));
    }

    [Test]
    public async Task When_the_save_also_updates_a_row_should_keep_its_messages_in_the_tracker()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true);
        var id = Guid.NewGuid();
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            db.Stock.Add(new Stock { Id = id, Quantity = 10 });
            await db.SaveChangesAsync();
        }

        await using var writer = host.Services.CreateAsyncScope();
        var context = writer.ServiceProvider.GetRequiredService<ShopDbContext>();
        (await context.Stock.SingleAsync(s => s.Id == id)).Quantity = 9;
        var messageId = writer.ServiceProvider.GetRequiredService<IOutbox>().Publish(new WidgetCreated(id, "updated", 9));
        await context.SaveChangesAsync();

        var entry = context.ChangeTracker.Entries<OutboxMessage>().Single();
        Assert.That(entry.State, Is.EqualTo(EntityState.Unchanged));
        Assert.That(entry.Entity.Sequence, Is.GreaterThan(0));
        await Until(() => host.Received.ByMessageId.ContainsKey(messageId), "the message delivered");
    }

    [TestCase(false, TestName = "When_another_interceptor_suppresses_an_insert_only_save_should_neither_write_nor_send_its_messages")]
    [TestCase(true, TestName = "When_another_interceptor_suppresses_a_save_with_an_update_should_neither_write_nor_send_its_messages")]
    public async Task When_another_interceptor_suppresses_the_save_should_neither_write_nor_send_its_messages(bool withUpdate)
    {
        var suppress = new SuppressSaves();
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = true, interceptor: suppress);
        var id = Guid.NewGuid();
        await using (var setup = host.Services.CreateAsyncScope())
        {
            var setupDb = setup.ServiceProvider.GetRequiredService<ShopDbContext>();
            setupDb.Stock.Add(new Stock { Id = id, Quantity = 10 });
            await setupDb.SaveChangesAsync();
        }

        await using var scope = host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        if (withUpdate)
            (await db.Stock.SingleAsync(s => s.Id == id)).Quantity = 9;   // the tracked path
        else
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "suppressed" });   // the appended path
        var messageId = scope.ServiceProvider.GetRequiredService<IOutbox>().Publish(new WidgetCreated(id, "suppressed", 1));
        suppress.On = true;

        await db.SaveChangesAsync();

        Assert.That(db.ChangeTracker.Entries<OutboxMessage>().Select(e => e.State), Is.EqualTo(new[] { EntityState.Added }),
            "the message of a save that wrote nothing must stay tracked for a later save");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(host.Received.ByMessageId.ContainsKey(messageId), Is.False, "a message that was never written was sent");
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.Zero);
    }

    /// <summary>A user's interceptor that, once on, answers every save itself: EF Core then sends no command.</summary>
    sealed class SuppressSaves : Microsoft.EntityFrameworkCore.Diagnostics.SaveChangesInterceptor
    {
        public volatile bool On;

        public override ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int>> SavingChangesAsync(
            Microsoft.EntityFrameworkCore.Diagnostics.DbContextEventData eventData, Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int> result,
            CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(On ? Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int>.SuppressWithResult(0) : result);
    }

    static async Task Until(Func<bool> condition, string what) => await Until(() => Task.FromResult(condition()), what);

    static async Task Until(Func<Task<bool>> condition, string what) =>
        Assert.That(await Eventually.TrueAsync(condition, TimeSpan.FromSeconds(20)), Is.True, $"not within 20 s: {what}");
}
