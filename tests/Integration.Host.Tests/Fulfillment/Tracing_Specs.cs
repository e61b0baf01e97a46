using System.Collections.Concurrent;
using System.Diagnostics;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>One OpenTelemetry trace from <c>POST /api/orders</c> through the outbox, RabbitMQ, the saga and the services it drives.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Tracing_Specs
{
    sealed record Span(string TraceId, string Source, string Name, string Tags);

    [Test]
    public async Task When_an_order_is_posted_should_trace_it_from_the_request_to_the_completed_saga_in_one_trace()
    {
        var spans = new ConcurrentQueue<Span>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => spans.Enqueue(new Span(a.TraceId.ToString(), a.Source.Name, a.DisplayName,
                string.Join(' ', a.TagObjects.Select(t => $"{t.Key}={t.Value}")))),
        };
        ActivitySource.AddActivityListener(listener);
        await using var host = await TestHost.StartAsync("tracing");
        var orders = new OrdersClient(host.Client);

        var orderId = await orders.Submit(("PUMP-9", 1));
        await orders.WaitFor(orderId, "Completed");
        // The saga's last step and its span end a moment after the status is visible.
        await Task.Delay(TimeSpan.FromSeconds(1));

        var request = spans.FirstOrDefault(s => s.Source == "Microsoft.AspNetCore" && s.Tags.Contains("/api/orders", StringComparison.Ordinal)
                                                && s.Tags.Contains("POST", StringComparison.Ordinal));
        Assert.That(request, Is.Not.Null, () => "no server span for POST /api/orders; spans: " + Dump(spans));
        var trace = spans.Where(s => s.TraceId == request!.TraceId).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(trace.Any(s => s.Source == "Integration.Outbox" && s.Name == "outbox send"), Is.True, () => "no outbox send in the request's trace: " + Dump(trace));
            foreach (var message in new[] { "OrderSubmitted", "ReserveParts", "PartsReserved", "CreatePurchaseOrder", "PurchaseOrderCreated", "UpdateInventory", "InventoryUpdated" })
            {
                Assert.That(trace.Any(s => s.Source == "MassTransit" && (s.Name + " " + s.Tags).Contains(message, StringComparison.Ordinal)), Is.True,
                    () => $"{message} is not in the request's trace: " + Dump(trace));
            }
        });
    }

    static string Dump(IEnumerable<Span> spans) =>
        string.Join("\n", spans.Select(s => $"{s.TraceId[..8]} {s.Source} '{s.Name}' {s.Tags[..Math.Min(200, s.Tags.Length)]}"));
}
