using Integration.Testing;
using Npgsql;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>
/// The fulfillment saga under a real crash: the host process is SIGKILLed with one order waiting for approval (its
/// timeout pending in the scheduler) and one in the middle of its steps; a new host process resumes both.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class FulfillmentCrash_Specs
{
    [Test]
    public async Task When_the_host_is_killed_mid_saga_should_resume_the_sagas_and_fire_pending_timeouts_after_restart()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("fulfillment-crash");
        await using var database = await infrastructure.CreateDatabaseAsync("fulfillment_crash");
        var settings = new Dictionary<string, string?>(broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            ["Integration:Probes:Enabled"] = "false",
            ["Integration:Fulfillment:ApprovalTimeout"] = "00:00:10",   // long enough that it cannot fire before the kill on a loaded machine
            ["Integration:Fulfillment:SimulatedServiceDelay"] = "00:00:01",
        };

        Guid waiting, inFlight;
        await using (var doomed = await HostProcess.StartAsync("Integration.Host.dll", settings))
        {
            var orders = new OrdersClient(doomed.Client);
            waiting = await orders.Submit(("PUMP-1", 250));
            await orders.WaitFor(waiting, "AwaitingApproval");
            inFlight = await orders.Submit(("HOSE-3", 2));
            await orders.WaitFor(inFlight, "Reserving");
            Assert.That(await PendingTimeouts(database), Is.EqualTo(1), "precondition: the approval timeout is stored in the scheduler");

            doomed.Kill();
        }

        // The timeout falls due while no host runs.
        await Task.Delay(TimeSpan.FromSeconds(10));
        Assert.That(await Status(database, inFlight), Is.Not.EqualTo("Completed"), "precondition: the second order was mid-saga when the host died");

        settings["Integration:Fulfillment:SimulatedServiceDelay"] = "00:00:00";
        await using var restarted = await HostProcess.StartAsync("Integration.Host.dll", settings);
        var resumed = new OrdersClient(restarted.Client);

        var completed = await resumed.WaitFor(inFlight, "Completed", TimeSpan.FromSeconds(60));
        Assert.That(completed.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "PurchaseOrderCreated", "InventoryUpdated" }));

        // A clustered scheduler may first have to recover the dead node's acquired trigger (after its check-in misfire threshold).
        var timedOut = await resumed.WaitFor(waiting, "Failed", TimeSpan.FromSeconds(90));
        Assert.That(timedOut.Steps, Is.EqualTo(new[] { "Submitted", "PartsReserved", "ApprovalRequested", "ApprovalTimedOut", "ReservationReleased" }));
    }

    static async Task<long> PendingTimeouts(TestDatabase database)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM qrtz_triggers", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    static async Task<string?> Status(TestDatabase database, Guid orderId)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT current_state FROM order_fulfillment WHERE correlation_id = @id", connection);
        command.Parameters.AddWithValue("id", orderId);
        return (string?)await command.ExecuteScalarAsync();
    }
}
