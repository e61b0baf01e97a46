using Integration.Caching;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.Caching.Hybrid;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Hubs.Tests;

static class Cache
{
    public static void Items(CacheInvalidationConfigurator caching) =>
        caching.Invalidate<ItemChanged>(m => [$"item:{m.Id}"], tags: m => [m.Group]);

    /// <summary>Reads <paramref name="key"/> through the node's cache; the factory returns <paramref name="fresh"/>.</summary>
    public static async Task<CacheRead<string>> Read(Node node, string key, string fresh, string? tag = null) =>
        await node.Services.GetRequiredService<HybridCache>().ReadThroughAsync(key, _ => ValueTask.FromResult(fresh), tags: tag is null ? null : [tag]);
}

/// <summary>Cache invalidation on one host, on every transport: keys and tags evicted by a declared event, bad events faulted.</summary>
[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq))]
[Category("Integration")]
public sealed class CacheInvalidation_Specs<TTransport>
    where TTransport : ITransport, new()
{
    TTransport _transport = default!;
    Node _node = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _transport = new TTransport();
        _node = await Node.StartAsync(_transport, caching: Cache.Items);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _node.DisposeAsync();
        await _transport.DisposeAsync();
    }

    [Test]
    public async Task When_a_cached_value_is_read_again_should_hit_without_running_the_factory()
    {
        var key = "item:" + Guid.NewGuid();
        var first = await Cache.Read(_node, key, "v1");
        var second = await Cache.Read(_node, key, "v2");

        Assert.Multiple(() =>
        {
            Assert.That((first.Hit, first.Value), Is.EqualTo((false, "v1")));
            Assert.That((second.Hit, second.Value), Is.EqualTo((true, "v1")));
        });
    }

    [Test]
    public async Task When_a_declared_event_is_published_should_evict_its_keys_and_tagged_entries()
    {
        var (id, group) = (Guid.NewGuid().ToString("N"), Guid.NewGuid().ToString("N"));
        await Cache.Read(_node, $"item:{id}", "old");
        await Cache.Read(_node, $"list:{group}", "old-list", tag: group);
        await Cache.Read(_node, "item:untouched-" + id, "kept");

        await _node.Bus.Publish(new ItemChanged(id, group));

        Assert.That(await Eventually.TrueAsync(async () => !(await Cache.Read(_node, $"item:{id}", "new")).Hit, TimeSpan.FromSeconds(20)), Is.True, "key kept");
        Assert.Multiple(async () =>
        {
            Assert.That((await Cache.Read(_node, $"item:{id}", "newer")).Value, Is.EqualTo("new"));
            Assert.That((await Cache.Read(_node, $"list:{group}", "new-list", tag: group)).Value, Is.EqualTo("new-list"));
            Assert.That((await Cache.Read(_node, "item:untouched-" + id, "other")).Value, Is.EqualTo("kept"));
        });
    }

    [Test]
    public async Task When_an_event_yields_an_empty_tag_should_fault_it_with_the_reason()
    {
        await _node.Bus.Publish(new ItemChanged("some-item", " "));

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_node.Faults.All.Any(f => f.Message == typeof(ItemChanged))), TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(_node.Faults.All.First(f => f.Message == typeof(ItemChanged)).Exception.Message, Does.Contain("ItemChanged yielded an empty tag"));
    }
}

/// <summary>Cache invalidation across two hosts on RabbitMQ: an event raised on host A evicts host B's copies.</summary>
[TestFixture]
[Category("Integration")]
public sealed class CacheInvalidationAcrossHosts_Specs
{
    RabbitMq _transport = null!;
    Node _a = null!;
    Node _b = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _transport = new RabbitMq();
        _a = await Node.StartAsync(_transport, caching: Cache.Items);
        _b = await Node.StartAsync(_transport, caching: Cache.Items);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
        await _transport.DisposeAsync();
    }

    [Test]
    public async Task When_an_item_cached_on_both_hosts_changes_on_host_A_should_be_evicted_on_both()
    {
        var id = Guid.NewGuid().ToString("N");
        await Cache.Read(_a, $"item:{id}", "old");
        await Cache.Read(_b, $"item:{id}", "old");

        await _a.Bus.Publish(new ItemChanged(id, "g"));

        foreach (var node in new[] { _a, _b })
            Assert.That(await Eventually.TrueAsync(async () => !(await Cache.Read(node, $"item:{id}", "new")).Hit, TimeSpan.FromSeconds(20)), Is.True);
    }

    [Test]
    public async Task Should_give_each_host_its_own_non_durable_auto_delete_queue()
    {
        var queues = await _transport.QueuesAsync("cache-invalidation-");

        Assert.That(queues, Has.Count.EqualTo(2));
        Assert.That(queues.Select(q => (q.GetProperty("auto_delete").GetBoolean(), q.GetProperty("durable").GetBoolean())), Has.All.EqualTo((true, false)));
    }
}

/// <summary>Declarations are checked when the invalidation is registered.</summary>
[TestFixture]
public sealed class CacheInvalidationDeclaration_Specs
{
    static string Failure(Action<CacheInvalidationConfigurator> configure)
    {
        var services = new ServiceCollection();
        var exception = Assert.Throws<InvalidOperationException>(() => services.AddMassTransit(x => x.AddCacheInvalidation(configure)));
        return exception!.Message;
    }

    [Test]
    public void When_no_event_is_declared_should_refuse_it() =>
        Assert.That(Failure(_ => { }), Does.Contain("declare at least one event with Invalidate<T>"));

    [Test]
    public void When_an_event_is_declared_twice_should_name_it() =>
        Assert.That(Failure(c => c.Invalidate<ItemChanged>(m => [m.Id]).Invalidate<ItemChanged>(m => [m.Group])), Does.Contain("ItemChanged is declared 2 times"));

    [Test]
    public void When_the_queue_prefix_is_empty_should_name_the_setting() =>
        Assert.That(Failure(c =>
        {
            Cache.Items(c);
            c.QueuePrefix = " ";
        }), Does.Contain("QueuePrefix is required"));
}
