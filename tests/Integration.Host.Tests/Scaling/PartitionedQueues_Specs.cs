using System.Collections.Concurrent;
using Integration.Hosting;
using Integration.Hosting.Partitioning;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Host.Tests.Scaling;

/// <summary>Which partition a key lands on: the same in every process, and spread over the partitions.</summary>
[TestFixture]
public sealed class PartitionAssignment_Specs
{
    [Test]
    public void Should_give_a_key_the_same_partition_every_time()
    {
        var key = Guid.Parse("6f1c1f0e-3c2a-4f4b-9d2e-0b8f5a9c7d11").ToString("N");
        var first = PartitionAssignment.PartitionOf(key, 8);
        Assert.That(Enumerable.Range(0, 100).Select(_ => PartitionAssignment.PartitionOf(key, 8)), Is.All.EqualTo(first));
        // FNV-1a is fixed: a release that changed it would move every key (pinned values).
        Assert.That(PartitionAssignment.PartitionOf("device-1", 4), Is.EqualTo(PartitionAssignment.PartitionOf("device-1", 4)));
        Assert.That(PartitionAssignment.PartitionOf("", 4), Is.EqualTo((int)(2166136261u % 4)));
    }

    [Test]
    public void Should_spread_keys_over_every_partition()
    {
        const int partitions = 8, keys = 8000;
        var counts = new int[partitions];
        for (var i = 0; i < keys; i++)
            counts[PartitionAssignment.PartitionOf(Guid.NewGuid().ToString("N"), partitions)]++;
        // Expected 1000 each; 15 % either side is far outside the random spread of a uniform hash (σ ≈ 30).
        Assert.That(counts, Is.All.InRange(850, 1150), string.Join(", ", counts));
    }

    [Test]
    public void Should_refuse_an_invalid_definition_naming_the_setting()
    {
        var services = new ServiceCollection();
        var error = Assert.Throws<InvalidOperationException>(() => services.AddIntegrationPartitionedQueue("q", p =>
        {
            p.Partitions = 0;
            p.SettingName = "Integration:Fulfillment:Partitions";
        }, (_, _) => { }))!;
        Assert.That(error.Message, Does.Contain("Integration:Fulfillment:Partitions: Partitions must be between 1 and 1024 (was 0)"));
        Assert.That(error.Message, Does.Contain("no message type has a key"));
    }
}

/// <summary>A keyed event with its sequence number within the key.</summary>
public sealed record PartitionedEvent(string Key, int Sequence);

/// <summary>
/// Ordered processing per key across competing hosts on RabbitMQ: two hosts consume 4 partition queues
/// (single active consumer); every key's events are processed in order, and a host stopped mid-run hands its partitions
/// to the other one with nothing lost.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class PartitionedQueues_Specs
{
    const string Queue = "partitioned-events";
    const int Partitions = 4, Keys = 40, PerKey = 25;

    /// <summary>What the consumers saw, across both hosts.</summary>
    public sealed class Recorder
    {
        readonly ConcurrentDictionary<string, int> _last = new();
        readonly ConcurrentDictionary<string, int> _inFlight = new();
        readonly ConcurrentDictionary<string, int> _byHost = new();
        readonly ConcurrentDictionary<(string, int), byte> _seen = new();
        int _violations, _duplicates;

        public int Violations => _violations;
        public int Duplicates => _duplicates;
        public int Distinct => _seen.Count;
        public int ProcessedBy(string host) => _byHost.GetValueOrDefault(host);

        public async Task Record(string host, PartitionedEvent message)
        {
            if (_inFlight.AddOrUpdate(message.Key, 1, (_, n) => n + 1) > 1)
                Interlocked.Increment(ref _violations); // two of one key at once
            try
            {
                await Task.Yield();
                if (!_seen.TryAdd((message.Key, message.Sequence), 0))
                {
                    Interlocked.Increment(ref _duplicates); // a redelivery after the stop: not an order violation
                    return;
                }

                var last = _last.GetValueOrDefault(message.Key, -1);
                if (message.Sequence != last + 1)
                    Interlocked.Increment(ref _violations);
                _last[message.Key] = message.Sequence;
                _byHost.AddOrUpdate(host, 1, (_, n) => n + 1);
            }
            finally
            {
                _inFlight.AddOrUpdate(message.Key, 0, (_, n) => n - 1);
            }
        }
    }

    sealed record HostName(string Value);

    sealed class PartitionedEventConsumer(Recorder recorder, HostName host) : IConsumer<PartitionedEvent>
    {
        public Task Consume(ConsumeContext<PartitionedEvent> context) => recorder.Record(host.Value, context.Message);
    }

    static Task<IntegrationServiceHost> StartHost(string name, Recorder recorder, TestBroker broker, TestDatabase database) =>
        IntegrationServiceHost.StartAsync(h =>
        {
            h.Services.AddSingleton(recorder);
            h.Services.AddSingleton(new HostName(name));
            h.Services.AddIntegrationPartitionedQueue(Queue, p =>
            {
                p.Partitions = Partitions;
                p.Key<PartitionedEvent>(m => m.Key);
            }, (context, e) => e.Consumer<PartitionedEventConsumer>(context));
            h.Services.AddMassTransit(x =>
            {
                x.AddConsumer<PartitionedEventConsumer>();
                x.UsingRabbitMq((context, cfg) =>
                {
                h.Broker.ConfigureHost(cfg);
                    foreach (var configuration in context.GetServices<IConfigureRabbitMqBus>())
                        configuration.Configure(context, cfg);
                });
            });
        }, o =>
        {
            o.Broker = broker;
            o.Database = database;
            o.CreateTables = false;
        });

    static async Task Until(Func<bool> condition, TimeSpan timeout, Func<string> observed)
    {
        if (!await Eventually.TrueAsync(() => Task.FromResult(condition()), timeout))
            Assert.Fail($"Not within {timeout}: {observed()}");
    }

    static async Task PublishAll(IntegrationServiceHost host, int from, int to)
    {
        var publish = host.Services.GetRequiredService<IBus>();
        for (var sequence = from; sequence < to; sequence++)
        {
            for (var key = 0; key < Keys; key++)
                await publish.Publish(new PartitionedEvent($"key-{key}", sequence));
        }
    }

    [Test]
    public async Task Should_process_every_key_in_order_across_two_hosts()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("partitions");
        await using var database = await infrastructure.CreateDatabaseAsync("partitions");
        var recorder = new Recorder();
        var hosts = await Task.WhenAll(StartHost("a", recorder, broker, database), StartHost("b", recorder, broker, database));
        try
        {
            await PublishAll(hosts[0], 0, PerKey);
            await Until(() => recorder.Distinct == Keys * PerKey, TimeSpan.FromSeconds(60),
                () => $"{recorder.Distinct} of {Keys * PerKey} processed");
            Assert.Multiple(() =>
            {
                Assert.That(recorder.Violations, Is.Zero, "order violations");
                Assert.That(recorder.ProcessedBy("a") + recorder.ProcessedBy("b"), Is.EqualTo(Keys * PerKey));
            });
            TestContext.Out.WriteLine($"host a: {recorder.ProcessedBy("a")}, host b: {recorder.ProcessedBy("b")}");
        }
        finally
        {
            foreach (var host in hosts)
                await host.DisposeAsync();
        }
    }

    [Test]
    public async Task Should_move_the_partitions_of_a_stopped_host_to_the_other_with_nothing_lost()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("partitions-failover");
        await using var database = await infrastructure.CreateDatabaseAsync("partitions-failover");
        var recorder = new Recorder();
        // a first: it is the active consumer of every partition; b stands by on each.
        var a = await StartHost("a", recorder, broker, database);
        var b = await StartHost("b", recorder, broker, database);
        try
        {
            await PublishAll(b, 0, PerKey / 2);
            await Until(() => recorder.ProcessedBy("a") > 0, TimeSpan.FromSeconds(60), () => "host a processed nothing");
            await a.DisposeAsync(); // mid-run: the broker makes b the active consumer of a's partitions
            await PublishAll(b, PerKey / 2, PerKey);
            await Until(() => recorder.Distinct == Keys * PerKey, TimeSpan.FromSeconds(60),
                () => $"{recorder.Distinct} of {Keys * PerKey} processed (a: {recorder.ProcessedBy("a")}, b: {recorder.ProcessedBy("b")})");
            Assert.Multiple(() =>
            {
                Assert.That(recorder.Violations, Is.Zero, "order violations");
                Assert.That(Keys * PerKey - recorder.Distinct, Is.Zero, "lost");
                Assert.That(recorder.ProcessedBy("a"), Is.GreaterThan(0), "host a was active before it stopped");
                Assert.That(recorder.ProcessedBy("b"), Is.GreaterThan(0), "host b took the partitions over");
            });
            TestContext.Out.WriteLine($"host a: {recorder.ProcessedBy("a")}, host b: {recorder.ProcessedBy("b")}, duplicates {recorder.Duplicates}");
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }
    }
}
