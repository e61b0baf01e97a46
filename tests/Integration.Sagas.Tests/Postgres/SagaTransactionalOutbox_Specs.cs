using System.Collections.Concurrent;
using Integration.Sagas.Postgres;
using MassTransit;
using MassTransit.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Postgres;

/// <summary>
/// An optimistic saga that writes its messages into the transactional outbox: an attempt that loses its <c>xmin</c> check (or
/// its duplicate insert) commits nothing, so no message of a rolled-back attempt is ever delivered, with the relay's direct
/// delivery on or off.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class SagaTransactionalOutbox_Specs
{
    readonly ConcurrentBag<Counted> _counted = [];

    [TestCase(false)]
    [TestCase(true)]
    public async Task When_100_events_race_for_one_instance_should_deliver_each_count_exactly_once(bool directDelivery)
    {
        _counted.Clear();
        await using var bus = await CounterSagaBus.StartAsync("saga-outbox", concurrentMessageLimit: 32, o =>
            {
                o.ConcurrencyMode = SagaConcurrencyMode.Optimistic;
                o.ConflictRetryLimit = 100;
                o.TransactionalOutbox = true;
            }, prefetch: 64,
            bus: x => x.AddHandler<Counted>(context =>
            {
                _counted.Add(context.Message);
                return Task.CompletedTask;
            }),
            outbox: o =>
            {
                o.DirectDelivery = directDelivery;
                o.PollInterval = TimeSpan.FromMilliseconds(200);
            });
        var id = NewId.NextGuid();

        // No start event: the first increments race to create the instance (duplicate inserts), the rest race to update it.
        await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => bus.Harness.Bus.Publish(new CounterIncremented(id))));

        Assert.That(await bus.Eventually(s => s?.Count >= 100, id, TimeSpan.FromMilliseconds(100)), Is.True,
            () => $"count is {bus.Stored(id).Result?.Count}, expected 100");
        Assert.That(await Integration.Testing.Eventually.TrueAsync(() => Task.FromResult(_counted.Count >= 100), TimeSpan.FromSeconds(30)), Is.True,
            () => $"{_counted.Count} of 100 counts delivered");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(_counted.Where(c => c.CounterId == id).Select(c => c.Count).Order(), Is.EqualTo(Enumerable.Range(1, 100)),
            "each count must be delivered exactly once: a repeat is a message of a rolled-back attempt that the outbox committed");
        await using var scope = bus.Provider.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
        var rows = await db.Database.SqlQueryRaw<long>("SELECT count(*) AS \"Value\" FROM sagas.outbox_messages").SingleAsync();
        var undelivered = await db.Database.SqlQueryRaw<long>("SELECT count(*) AS \"Value\" FROM sagas.outbox_messages WHERE delivered_at IS NULL").SingleAsync();
        Assert.That(rows, Is.EqualTo(100), "one outbox row per applied increment");
        Assert.That(undelivered, Is.Zero);
        Assert.That(await bus.Harness.Published.Any<Fault<CounterIncremented>>(), Is.False, "an increment faulted");
    }
}
