using Integration.Sagas.Postgres;
using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Postgres;

/// <summary>
/// <see cref="PostgresSagaRepositoryOptions.BatchReads"/>: concurrent events' instance reads go out together, and each event
/// is still applied exactly once: the row version each was given guards its UPDATE, so two events of one instance in
/// one read conflict and the loser is applied again from a fresh read.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class SagaBatchReads_Specs
{
    CounterSagaBus _bus = null!;

    ITestHarness _harness => _bus.Harness;
    RoundTrips _roundTrips => _bus.RoundTrips;

    [SetUp]
    public async Task Start() => _bus = await CounterSagaBus.StartAsync("saga-batch", concurrentMessageLimit: 32, o =>
    {
        o.BatchReads = true;
        o.ConflictRetryLimit = 100;
    }, prefetch: 64);

    [TearDown]
    public async Task Stop() => await _bus.DisposeAsync();

    Task<Dictionary<Guid, int>> Counts() => _bus.Counts();

    [Test]
    public async Task When_events_of_many_instances_arrive_at_once_should_read_them_together_and_apply_each_once()
    {
        var ids = Enumerable.Range(0, 60).Select(_ => NewId.NextGuid()).ToArray();
        // Instances that do not exist yet: the coalesced read finds no row, and each one is created by its first event.
        await Task.WhenAll(ids.Select(id => _harness.Bus.Publish(new CounterStarted(id, "pump"))));
        Assert.That(await Eventually.TrueAsync(async () => (await Counts()).Count == ids.Length, TimeSpan.FromSeconds(30)), Is.True, "not every instance was created");
        _roundTrips.Reset();

        await Task.WhenAll(ids.Select(id => _harness.Bus.Publish(new CounterIncremented(id))));

        Assert.That(await Eventually.TrueAsync(async () => (await Counts()).Values.All(c => c == 1), TimeSpan.FromSeconds(30)), Is.True,
            () => $"counts: {string.Join(", ", Counts().Result.Values)}");
        var reads = _roundTrips.Commands.Count(c => c == "SELECT");
        TestContext.Out.WriteLine($"{ids.Length} events, {reads} reads");
        Assert.Multiple(async () =>
        {
            Assert.That(reads, Is.LessThan(ids.Length), "concurrent events' reads must share statements");
            Assert.That(_roundTrips.Commands.Count(c => c == "UPDATE"), Is.EqualTo(ids.Length), "each event writes its own instance once");
            Assert.That(await _harness.Published.Any<Fault<CounterIncremented>>(), Is.False);
        });
    }

    [Test]
    public async Task When_many_events_of_one_instance_are_read_together_should_lose_no_update()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "valve"));
        Assert.That(await Eventually.TrueAsync(async () => (await Counts()).ContainsKey(id), TimeSpan.FromSeconds(30)), Is.True);

        // 50 increments of one instance, 32 at a time: one read hands several events the same row version; all but one of
        // them lose the xmin check and are applied again from a fresh read.
        await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => _harness.Bus.Publish(new CounterIncremented(id))));

        Assert.That(await Eventually.TrueAsync(async () => (await Counts())[id] >= 50, TimeSpan.FromSeconds(60)), Is.True,
            () => $"count {Counts().Result[id]} of 50");
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.Multiple(async () =>
        {
            Assert.That((await Counts())[id], Is.EqualTo(50), "an update was lost or applied twice");
            Assert.That(await _harness.Published.Any<Fault<CounterIncremented>>(), Is.False);
        });
    }
}
