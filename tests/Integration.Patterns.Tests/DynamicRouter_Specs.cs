using Integration.Patterns.DynamicRouting;
using Integration.Patterns.Endpoints;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class DynamicRouter_Specs<TTransport>
    where TTransport : ITransport, new()
{
    [Test]
    public async Task When_each_step_sends_the_message_back_should_compute_the_next_destination_until_done()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes
                .From<Order>("work", r => r.DynamicRoute((o, visited) => visited.Count switch
                {
                    0 => "check",
                    1 when o.Amount > 100 => "approve",
                    1 or 2 => "price",
                    _ => null,
                }, completed: "work-done"))
                .From<Order>("check", r => r.To("work"))
                .From<Order>("approve", r => r.To("work"))
                .From<Order>("price", r => r.To("work")),
            ["work-done"]);

        await harness.Send("work", new Order("big", "x", 500));

        var done = (await harness.WaitFor("work-done")).Single();
        var hops = MessageHistory.Read(done.Headers).Select(e => e.Step).Where(s => s.StartsWith("dynamic:dynamic->", StringComparison.Ordinal));
        Assert.That(hops, Is.EqualTo(new[] { "dynamic:dynamic->check", "dynamic:dynamic->approve", "dynamic:dynamic->price" }));
    }

    [Test]
    public async Task When_the_message_loops_should_stop_at_max_hops_and_fault_it_with_the_path()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes
                .From<Order>("work", r => r.DynamicRoute((_, _) => "check", completed: "work-done", maxHops: 3))
                .From<Order>("check", r => r.To("work")),
            ["work-done"]);

        await harness.Send("work", new Order("loop", "x", 1));

        Assert.That(await harness.Harness.Consumed.Any<Order>(x =>
            x.Exception is DynamicRoutingException e && e.Message.Contains("routed 3 times (max hops 3)") && e.Message.Contains("check > check > check")), Is.True);
        Assert.That(await harness.QueueHolds("work_error", 1), Is.True);
        Assert.That(harness.At("work-done"), Is.Empty);
    }

    [Test]
    public void When_max_hops_is_out_of_range_should_fail_at_bus_start()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("work", r => r.DynamicRoute((_, _) => null, completed: "work-done", maxHops: 0)), []);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'work', step 1 (DynamicRoute): maxHops must be 1 to 100, not 0"));
    }
}
