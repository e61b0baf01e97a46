using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Cli.Tests;

/// <summary><c>saga show</c> against the live sample host: an order submitted over its API, shown as the saga recorded it.</summary>
public sealed partial class Cli_Specs
{
    const string Saga = "order-fulfillment";

    static readonly string[] CompletedTimeline =
    [
        "Submitted Initial Reserving",
        "Reserved Reserving CreatingPurchaseOrder",
        "PurchaseOrderCreated CreatingPurchaseOrder UpdatingInventory",
        "InventoryUpdated UpdatingInventory Completed",
    ];

    async Task<Guid> SubmitOrder()
    {
        var orderId = Guid.NewGuid();
        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId,
            deviceId = "truck-cli",
            region = "north",
            lines = new[] { new { sku = "PUMP-1", quantity = 2 } },
        });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted), await response.Content.ReadAsStringAsync());
        return orderId;
    }

    /// <summary>Runs <c>saga show --json</c> until the instance is in <paramref name="state"/>; returns that JSON.</summary>
    async Task<JsonElement> WaitForState(Guid orderId, string state)
    {
        CliRun? last = null;
        JsonElement instance = default;
        var reached = await Eventually.TrueAsync(async () =>
        {
            last = await Run(ViewerKey, "saga", "show", Saga, orderId.ToString(), "--json");
            if (last.ExitCode != 0)
                return false;
            instance = JsonDocument.Parse(last.Output).RootElement.Clone();
            return instance.TryGetProperty("state", out var s) && s.GetString() == state;
        }, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200));
        Assert.That(reached, Is.True, () => $"saga {orderId} never reached {state}; last: {last}");
        return instance;
    }

    [Test]
    public async Task Saga_show_json_should_print_the_instance_the_host_recorded_with_its_timeline_in_order()
    {
        var orderId = await SubmitOrder();

        var instance = await WaitForState(orderId, "Completed");

        Assert.Multiple(() =>
        {
            Assert.That(instance.GetProperty("saga").GetString(), Is.EqualTo(Saga));
            Assert.That(instance.GetProperty("correlationId").GetGuid(), Is.EqualTo(orderId));
            Assert.That(instance.TryGetProperty("outcome", out _), Is.False, "the instance itself, not the control call's wrapper");
            var timeline = instance.GetProperty("timeline").EnumerateArray()
                .Select(t => $"{t.GetProperty("event").GetString()} {t.GetProperty("from").GetString()} {t.GetProperty("to").GetString()}").ToList();
            Assert.That(timeline, Is.EqualTo(CompletedTimeline), "events with their transitions, oldest first");
        });
    }

    [Test]
    public async Task Saga_show_should_print_the_state_and_the_timeline_events_in_order()
    {
        var orderId = await SubmitOrder();
        await WaitForState(orderId, "Completed");

        var run = await Run(ViewerKey, "saga", "show", Saga, orderId.ToString());

        Assert.That(run.ExitCode, Is.EqualTo(0), run.ToString());
        Assert.That(run.Output, Does.Contain($"{Saga} {orderId}: state Completed"), run.ToString());
        // The table's rows, cells split on the border: at │ event │ from │ to.
        var rows = run.Output.Split('\n')
            .Select(line => line.Split('│', '|').Select(cell => cell.Trim()).Where(cell => cell.Length > 0).ToArray())
            .Where(cells => cells.Length == 4 && DateTimeOffset.TryParse(cells[0], System.Globalization.CultureInfo.InvariantCulture, out _))
            .Select(cells => $"{cells[1]} {cells[2]} {cells[3]}").ToList();
        Assert.That(rows, Is.EqualTo(CompletedTimeline), run.ToString());
    }

    [Test]
    public async Task Saga_show_of_an_unknown_instance_should_exit_5()
    {
        var run = await Run(ViewerKey, "saga", "show", Saga, Guid.NewGuid().ToString());

        Assert.That(run.ExitCode, Is.EqualTo(5), run.ToString());
        Assert.That(run.Output, Does.Contain("Not found"), run.ToString());
    }
}
