using MassTransit;
using System.Net;
using Integration.Hubs;
using Integration.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Hubs.Tests;

/// <summary>The device hub on one host, on every transport: delivery to the named device, broadcasts, bad events, bad connections.</summary>
[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq))]
[Category("Integration")]
public sealed class DeviceHub_Specs<TTransport>
    where TTransport : ITransport, new()
{
    TTransport _transport = default!;
    Node _node = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _transport = new TTransport();
        _node = await Node.StartAsync(_transport, hub => hub
            .ToDevice<JobAssigned>(m => m.DeviceId)
            .Broadcast<Announcement>("announce"));
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _node.DisposeAsync();
        await _transport.DisposeAsync();
    }

    static string NewId(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..16];

    [Test]
    public async Task When_an_event_names_a_device_should_deliver_it_to_that_device_only()
    {
        var (truck, other) = (NewId("truck"), NewId("other"));
        await using var device = await _node.ConnectAsync(truck, "truck", nameof(JobAssigned));
        await using var second = await _node.ConnectAsync(truck, "truck", nameof(JobAssigned));
        await using var bystander = await _node.ConnectAsync(other, "truck", nameof(JobAssigned));

        await _node.Bus.Publish(new JobAssigned(truck, "job-1"));
        await _node.Bus.Publish(new JobAssigned(other, "job-2"));

        var job = await device.WaitFor(nameof(JobAssigned), m => m.GetProperty("job").GetString() == "job-1");
        await second.WaitFor(nameof(JobAssigned), m => m.GetProperty("job").GetString() == "job-1");
        await bystander.WaitFor(nameof(JobAssigned), m => m.GetProperty("job").GetString() == "job-2");
        Assert.Multiple(() =>
        {
            Assert.That(job.GetProperty("deviceId").GetString(), Is.EqualTo(truck));
            Assert.That(bystander.Received.Select(r => r.Payload.GetProperty("job").GetString()), Has.None.EqualTo("job-1"));
            Assert.That(device.Received.Select(r => r.Payload.GetProperty("job").GetString()), Has.None.EqualTo("job-2"));
        });
    }

    [Test]
    public async Task When_an_event_is_broadcast_should_reach_every_device_on_the_method_declared()
    {
        await using var a = await _node.ConnectAsync(NewId("a"), null, "announce");
        await using var b = await _node.ConnectAsync(NewId("b"), "warehouse", "announce");
        var text = "maintenance " + Guid.NewGuid();

        await _node.Bus.Publish(new Announcement(text));

        await a.WaitFor("announce", m => m.GetProperty("text").GetString() == text);
        await b.WaitFor("announce", m => m.GetProperty("text").GetString() == text);
    }

    [Test]
    public async Task When_an_event_names_no_device_should_fault_it_with_the_reason()
    {
        await _node.Bus.Publish(new JobAssigned("", "job-lost"));

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_node.Faults.All.Any(f => f.Message == typeof(JobAssigned))), TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(_node.Faults.All.First(f => f.Message == typeof(JobAssigned)).Exception.Message, Does.Contain("JobAssigned names no device"));
        if (_transport is RabbitMq rabbit)
        {
            var queue = _node.Services.GetRequiredService<DeviceHubSettings>().Queue + "_error";
            // Counted through the management API (the kit's passive-declare count answers null for this auto-delete queue).
            Assert.That(await Eventually.TrueAsync(async () => (await rabbit.QueuesAsync(queue)).Any(q => q.TryGetProperty("messages", out var m) && m.GetInt32() >= 1),
                TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(1)), Is.True, queue);
        }
    }

    [Test]
    public async Task When_a_device_connects_and_leaves_should_list_it_then_forget_it()
    {
        var id = NewId("listed");
        var connections = _node.Services.GetRequiredService<DeviceConnections>();
        var device = await _node.ConnectAsync(id, "truck");

        var listed = connections.All.Single(d => d.DeviceId == id);
        Assert.Multiple(() =>
        {
            Assert.That(listed.Type, Is.EqualTo("truck"));
            Assert.That(listed.Host, Is.EqualTo(connections.Host));
        });

        await device.DisposeAsync();
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(connections.All.All(d => d.DeviceId != id)), TimeSpan.FromSeconds(20)), Is.True);
    }

    [Test]
    public async Task When_a_connection_names_no_device_should_refuse_it_with_400_and_the_reason()
    {
        using var http = new HttpClient { BaseAddress = _node.BaseAddress };
        using var response = await http.PostAsync(new Uri("/hubs/devices/negotiate?negotiateVersion=1", UriKind.Relative), null);

        Assert.Multiple(async () =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(await response.Content.ReadAsStringAsync(), Does.Contain("'deviceId' is required"));
        });
    }
}

/// <summary>The device hub across two hosts on RabbitMQ: per-host queues, delivery wherever the device is, presence.</summary>
[TestFixture]
[Category("Integration")]
public sealed class DeviceHubAcrossHosts_Specs
{
    RabbitMq _transport = null!;
    Node _a = null!;
    Node _b = null!;

    static void Hub(DeviceHubConfigurator hub) => hub.ToDevice<JobAssigned>(m => m.DeviceId).Broadcast<Announcement>();

    [OneTimeSetUp]
    public async Task Start()
    {
        _transport = new RabbitMq();
        _a = await Node.StartAsync(_transport, Hub);
        _b = await Node.StartAsync(_transport, Hub);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        await _b.DisposeAsync();
        await _a.DisposeAsync();
        await _transport.DisposeAsync();
    }

    [Test]
    public async Task When_an_event_is_raised_on_host_A_should_reach_the_device_connected_to_host_B()
    {
        var id = "truck-" + Guid.NewGuid().ToString("N")[..8];
        await using var device = await _b.ConnectAsync(id, "truck", nameof(JobAssigned));

        await _a.Bus.Publish(new JobAssigned(id, "from-a"));

        await device.WaitFor(nameof(JobAssigned), m => m.GetProperty("job").GetString() == "from-a");
    }

    [Test]
    public async Task When_a_device_is_connected_to_host_B_should_be_listed_on_host_A_with_host_B()
    {
        var id = "truck-" + Guid.NewGuid().ToString("N")[..8];
        await using var device = await _b.ConnectAsync(id, "truck");
        var onA = _a.Services.GetRequiredService<DeviceConnections>();
        var hostB = _b.Services.GetRequiredService<DeviceConnections>().Host;

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(onA.All.Any(d => d.DeviceId == id && d.Host == hostB)), TimeSpan.FromSeconds(20)), Is.True);
        Assert.That(onA.Local.Any(d => d.DeviceId == id), Is.False, "host A holds no connection of its own for it");
    }

    [Test]
    public async Task Should_give_each_host_its_own_non_durable_auto_delete_queue()
    {
        var queues = await _transport.QueuesAsync("device-hub-");
        var names = new[] { _a, _b }.Select(n => n.Services.GetRequiredService<DeviceHubSettings>().Queue).ToList();

        Assert.That(queues.Select(q => q.GetProperty("name").GetString()), Is.SupersetOf(names));
        foreach (var queue in queues.Where(q => names.Contains(q.GetProperty("name").GetString()!)))
            Assert.Multiple(() =>
            {
                Assert.That(queue.GetProperty("auto_delete").GetBoolean(), Is.True);
                Assert.That(queue.GetProperty("durable").GetBoolean(), Is.False);
            });
    }
}

/// <summary>Declarations are checked when the hub is registered, with the call that is wrong in the message.</summary>
[TestFixture]
public sealed class DeviceHubDeclaration_Specs
{
    static string Failure(Action<DeviceHubConfigurator> configure)
    {
        var services = new ServiceCollection();
        var exception = Assert.Throws<InvalidOperationException>(() => services.AddMassTransit(x => x.AddDeviceHub(configure)));
        return exception!.Message;
    }

    [Test]
    public void When_no_event_is_declared_should_refuse_the_hub() =>
        Assert.That(Failure(_ => { }), Does.Contain("declare at least one event"));

    [Test]
    public void When_an_event_is_declared_twice_should_name_it() =>
        Assert.That(Failure(h => h.Broadcast<Announcement>().ToDevice<Announcement>(_ => "x")), Does.Contain("Announcement is declared 2 times"));

    [Test]
    public void When_the_presence_interval_is_out_of_range_should_name_the_setting() =>
        Assert.That(Failure(h =>
        {
            h.Broadcast<Announcement>();
            h.PresenceInterval = TimeSpan.Zero;
        }), Does.Contain("PresenceInterval must be between"));
}
