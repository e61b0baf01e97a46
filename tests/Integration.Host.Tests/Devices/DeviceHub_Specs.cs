using System.Net;
using System.Text.Json;
using Integration.Host.Contracts;
using InventoryUpdated = Integration.Host.Contracts.InventoryUpdated;
using OrderFulfillmentStateMachine = Integration.Host.Fulfillment.OrderFulfillmentStateMachine;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Host.Tests.Devices;

/// <summary>
/// The device hub across two hosts of one service (one vhost, one database): an event raised on host A reaches the device
/// connected to host B, broadcasts reach the devices of both, and the control bus of either host lists every device.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class DeviceHub_Specs
{
    TwoHosts _hosts = null!;

    [OneTimeSetUp]
    public async Task StartHosts() => _hosts = await TwoHosts.StartAsync("hub");

    [OneTimeTearDown]
    public async Task StopHosts() => await _hosts.DisposeAsync();

    static string NewDevice(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..20];

    [Test]
    public async Task When_an_event_is_raised_on_host_A_should_reach_the_device_connected_to_host_B()
    {
        var deviceId = NewDevice("truck");
        await using var device = await DeviceClient.ConnectAsync(_hosts.B, deviceId, "truck", nameof(OrderStatusChanged));
        var orderId = Guid.NewGuid();

        await _hosts.A.Services.GetRequiredService<IBus>().Publish(new OrderStatusChanged(orderId, deviceId, "Reserving", DateTimeOffset.UtcNow));

        var received = await device.WaitFor(nameof(OrderStatusChanged), m => m.GetProperty("orderId").GetGuid() == orderId);
        Assert.Multiple(() =>
        {
            Assert.That(received.GetProperty("status").GetString(), Is.EqualTo("Reserving"));
            Assert.That(received.GetProperty("deviceId").GetString(), Is.EqualTo(deviceId));
        });
    }

    [Test]
    public async Task When_an_order_is_submitted_on_host_A_should_tell_the_device_on_host_B_every_state_until_completed()
    {
        var deviceId = NewDevice("truck");
        await using var device = await DeviceClient.ConnectAsync(_hosts.B, deviceId, "truck", nameof(OrderStatusChanged));
        await using var other = await DeviceClient.ConnectAsync(_hosts.B, NewDevice("other"), "truck", nameof(OrderStatusChanged));

        var faults = new StatusFaults();
        using var onA = _hosts.A.Services.GetRequiredService<IBus>().ConnectConsumeObserver(faults);
        using var onB = _hosts.B.Services.GetRequiredService<IBus>().ConnectConsumeObserver(faults);

        var orderId = await TwoHosts.SubmitOrder(_hosts.A, deviceId);

        await device.WaitFor(nameof(OrderStatusChanged), m => m.GetProperty("orderId").GetGuid() == orderId && m.GetProperty("status").GetString() == "Completed");
        var statuses = device.Received.Where(r => r.Payload.GetProperty("orderId").GetGuid() == orderId).Select(r => r.Payload.GetProperty("status").GetString()).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(statuses, Is.SupersetOf(new[] { nameof(OrderFulfillmentStateMachine.Reserving), nameof(OrderFulfillmentStateMachine.CreatingPurchaseOrder),
                nameof(OrderFulfillmentStateMachine.UpdatingInventory), nameof(OrderFulfillmentStateMachine.Completed) }));
            Assert.That(other.Received.Where(r => r.Payload.GetProperty("orderId").GetGuid() == orderId), Is.Empty, "another device's order status");
        });
        Assert.That(faults.All.Select(f => f.Message), Is.Empty, "a status the hub could not deliver");
    }

    [Test]
    public async Task When_inventory_is_updated_should_broadcast_it_to_the_devices_of_both_hosts()
    {
        await using var onA = await DeviceClient.ConnectAsync(_hosts.A, NewDevice("wh"), "warehouse", nameof(InventoryUpdated));
        await using var onB = await DeviceClient.ConnectAsync(_hosts.B, NewDevice("truck"), "truck", nameof(InventoryUpdated));
        var sku = "SKU-" + Guid.NewGuid().ToString("N")[..8];

        await _hosts.A.Services.GetRequiredService<IBus>().Publish(new InventoryUpdated(sku, 12, -3, "wh-1", "north", DateTimeOffset.UtcNow));

        await onA.WaitFor(nameof(InventoryUpdated), m => m.GetProperty("sku").GetString() == sku);
        var received = await onB.WaitFor(nameof(InventoryUpdated), m => m.GetProperty("sku").GetString() == sku);
        Assert.That(received.GetProperty("quantity").GetInt32(), Is.EqualTo(12));
    }

    [Test]
    public async Task When_a_device_is_connected_to_host_B_should_be_listed_by_the_control_bus_of_host_A_with_its_host()
    {
        var deviceId = NewDevice("truck");
        await using var device = await DeviceClient.ConnectAsync(_hosts.B, deviceId, "truck");
        var hostB = (await TwoHosts.Control(_hosts.B, "devices.list")).GetProperty("host").GetString();

        JsonElement listed = default;
        var seen = await Integration.Testing.Eventually.TrueAsync(async () =>
        {
            var data = await TwoHosts.Control(_hosts.A, "devices.list");
            listed = data.GetProperty("devices").EnumerateArray().FirstOrDefault(d => d.GetProperty("deviceId").GetString() == deviceId);
            return listed.ValueKind == JsonValueKind.Object;
        }, TimeSpan.FromSeconds(30));

        Assert.That(seen, Is.True, "host A never listed the device connected to host B");
        Assert.Multiple(() =>
        {
            Assert.That(listed.GetProperty("type").GetString(), Is.EqualTo("truck"));
            Assert.That(listed.GetProperty("host").GetString(), Is.EqualTo(hostB));
            Assert.That(listed.GetProperty("since").GetDateTimeOffset(), Is.LessThanOrEqualTo(DateTimeOffset.UtcNow));
        });
    }

    [Test]
    public async Task When_a_device_disconnects_should_drop_it_from_the_other_host_s_list()
    {
        var deviceId = NewDevice("gone");
        var device = await DeviceClient.ConnectAsync(_hosts.B, deviceId, null);
        async Task<bool> ListedOnA() =>
            (await TwoHosts.Control(_hosts.A, "devices.list")).GetProperty("devices").EnumerateArray().Any(d => d.GetProperty("deviceId").GetString() == deviceId);
        Assert.That(await Integration.Testing.Eventually.TrueAsync(ListedOnA, TimeSpan.FromSeconds(30)), Is.True, "never listed");

        await device.DisposeAsync();

        Assert.That(await Integration.Testing.Eventually.TrueAsync(async () => !await ListedOnA(), TimeSpan.FromSeconds(30)), Is.True, "still listed after it left");
    }

    [Test]
    public async Task Should_show_the_connected_devices_on_the_dashboard_from_the_control_bus()
    {
        var page = await _hosts.A.Client.GetStringAsync(new Uri("/dashboard", UriKind.Relative));

        Assert.Multiple(() =>
        {
            Assert.That(page, Does.Contain("<h2>Connected devices</h2>"));
            Assert.That(page, Does.Contain("action: \"devices.list\""));
        });
    }

    [Test]
    public async Task When_a_connection_names_no_device_should_refuse_it_with_400_and_the_reason()
    {
        using var response = await _hosts.A.Client.PostAsync(new Uri("/hubs/devices/negotiate?negotiateVersion=1", UriKind.Relative), null);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Multiple(() =>
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(body, Does.Contain("deviceId"));
        });
    }
}

/// <summary>Faults of <see cref="OrderStatusChanged"/> consumers, seen as they happen (before retries end).</summary>
sealed class StatusFaults : IConsumeObserver
{
    readonly System.Collections.Concurrent.ConcurrentQueue<Exception> _faults = new();

    public IEnumerable<Exception> All => _faults;

    public Task PreConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task PostConsume<T>(ConsumeContext<T> context)
        where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, Exception exception)
        where T : class
    {
        if (context.Message is OrderStatusChanged)
            _faults.Enqueue(exception);
        return Task.CompletedTask;
    }
}
