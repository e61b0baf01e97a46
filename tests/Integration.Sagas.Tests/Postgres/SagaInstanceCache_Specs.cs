using Integration.Sagas.Postgres;
using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Postgres;

/// <summary>
/// <see cref="PostgresSagaRepositoryOptions.InstanceCacheSize"/>: events of a cached instance skip the SELECT, and a row
/// another process changed is never overwritten: the stale cached row version fails the UPDATE and the event is
/// applied again from a fresh read, not counted as a conflict retry.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class SagaInstanceCache_Specs
{
    CounterSagaBus _bus = null!;

    ITestHarness _harness => _bus.Harness;
    RoundTrips _roundTrips => _bus.RoundTrips;
    ServiceProvider _provider => _bus.Provider;

    [SetUp]
    public async Task Start() => _bus = await CounterSagaBus.StartAsync("saga-cache", concurrentMessageLimit: 1, o =>
    {
        o.InstanceCacheSize = 100;
        o.ConflictRetryLimit = 0;   // a stale cache entry must not need a conflict retry
    });

    [TearDown]
    public async Task Stop() => await _bus.DisposeAsync();

    Task<CounterState?> Stored(Guid id) => _bus.Stored(id);

    Task<bool> Eventually(Func<CounterState?, bool> condition, Guid id) => _bus.Eventually(condition, id, TimeSpan.FromMilliseconds(50));

    [Test]
    public async Task When_an_instance_is_cached_should_update_it_without_reading_it()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "pumps"));
        await _harness.Bus.Publish(new CounterIncremented(id));
        Assert.That(await Eventually(s => s?.Count == 1, id), Is.True, "the first increment was never applied");
        _roundTrips.Reset();

        await _harness.Bus.Publish(new CounterIncremented(id));
        await _harness.Bus.Publish(new CounterIncremented(id));

        Assert.That(await Eventually(s => s?.Count == 3, id), Is.True, "the cached increments were never applied");
        Assert.That(_roundTrips.Commands.Where(c => c != "INSERT"), Is.EqualTo(new[] { "UPDATE", "UPDATE" }),
            "an event of a cached instance is one UPDATE (xmin-checked), no SELECT");
    }

    [Test]
    public async Task When_another_process_changed_the_row_should_apply_the_event_to_the_fresh_row()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "valves"));
        await _harness.Bus.Publish(new CounterIncremented(id));
        Assert.That(await Eventually(s => s?.Count == 1, id), Is.True, "the first increment was never applied");

        // Another process writes the row: the cached copy (count 1) is now stale.
        await using (var scope = _provider.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
            await db.Database.ExecuteSqlRawAsync("UPDATE sagas.counter_state SET count = 10 WHERE correlation_id = {0}", id);
        }

        await _harness.Bus.Publish(new CounterIncremented(id));

        Assert.That(await Eventually(s => s?.Count == 11, id), Is.True,
            $"the increment must apply to the row as the other process left it (10 + 1), not to the cached copy; stored {(await Stored(id))?.Count}");
        Assert.That(await _harness.Published.Any<Fault<CounterIncremented>>(), Is.False, "a stale cache entry must not fault the event");
    }
}
