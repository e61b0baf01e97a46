using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>The fulfillment flow leaves nothing in memory between a commit and the broker: every message is an outbox row first.</summary>
[TestFixture]
[Category("Integration")]
public sealed class FulfillmentOutbox_Specs
{
    [Test]
    public async Task When_an_order_completes_should_have_sent_every_message_of_the_flow_through_the_transactional_outbox()
    {
        await using var host = await TestHost.StartAsync("fulfillment-outbox");
        var orders = new OrdersClient(host.Client);
        var orderId = await orders.Submit(("PUMP-1", 1));
        await orders.WaitFor(orderId, "Completed");

        await using var connection = new Npgsql.NpgsqlConnection(host.Database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            "SELECT split_part(split_part(message_type, ',', 1), '.', -1), envelope ->> 'conversationId', envelope ->> 'initiatorId' FROM outbox_messages WHERE correlation_id = @order OR body ->> 'orderId' = @text ORDER BY sequence",
            connection);
        command.Parameters.AddWithValue("order", orderId);
        command.Parameters.AddWithValue("text", orderId.ToString());
        var types = new List<string>();
        var envelopes = new List<(string? Conversation, string? Initiator)>();
        await using (var reader = await command.ExecuteReaderAsync())
            while (await reader.ReadAsync())
            {
                types.Add(reader.GetString(0));
                envelopes.Add((reader.IsDBNull(1) ? null : reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetString(2)));
            }

        // The order (HTTP handler), the saga's commands and outcome (saga repository) and the services' replies (inbox consumers).
        // Besides, each transition tells the order's device its new status (OrderStatusChanged, for the device hub).
        Assert.That(types.Where(t => t != "OrderStatusChanged"), Is.EqualTo(new[]
        {
            "OrderSubmitted", "ReserveParts", "PartsReserved", "CreatePurchaseOrder", "PurchaseOrderCreated", "UpdateInventory", "InventoryUpdated", "OrderFulfilled",
        }));
        Assert.That(types.Count(t => t == "OrderStatusChanged"), Is.EqualTo(4), "one status per state entered: Reserving, CreatingPurchaseOrder, UpdatingInventory, Completed");

        // The outbox keeps MassTransit's envelope: every message the flow caused is in one conversation and names its cause.
        TestContext.Out.WriteLine(string.Join(Environment.NewLine, envelopes.Select((e, i) => $"{types[i]}: conversation {e.Conversation}, initiator {e.Initiator}")));
        Assert.That(envelopes.Select(e => e.Conversation).Distinct().ToList(), Has.Count.EqualTo(1).And.None.Null, "one conversation, started by the order");
        Assert.That(envelopes.Skip(1).Select(e => e.Initiator), Has.None.Null, "every caused message names the message that caused it");
    }
}
