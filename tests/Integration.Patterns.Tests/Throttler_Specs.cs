using System.Diagnostics;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Routing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Throttler_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static Action<IRouteBuilder> Routes(int messages) => routes => routes.From<Order>("orders", r => r.To("orders-out"),
        endpoint => endpoint.RateLimit(messages, TimeSpan.FromSeconds(1)));

    [Test]
    public async Task When_a_route_is_rate_limited_should_space_its_messages_and_deliver_all()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes(10), ["orders-out"]);

        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < 11; i++)
            await harness.Send("orders", new Order($"{i}", "x", i));

        Assert.That((await harness.WaitFor("orders-out", 11)).Count, Is.EqualTo(11));
        Assert.That(stopwatch.Elapsed, Is.GreaterThan(TimeSpan.FromMilliseconds(900)), "11 messages at 10/s need 10 spacings of 100 ms");
    }

    [Test]
    public async Task When_the_rate_limit_is_raised_at_run_time_should_apply_to_the_next_messages()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes(1), ["orders-out"]);

        Assert.That(harness.Control.SetRateLimit("orders", 1000, TimeSpan.FromSeconds(1)), Is.Empty);
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < 20; i++)
            await harness.Send("orders", new Order($"{i}", "x", i));

        Assert.That((await harness.WaitFor("orders-out", 20)).Count, Is.EqualTo(20));
        Assert.That(stopwatch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(8)), "at the old 1/s the 20 messages would take 19 s");
        Assert.That(harness.Control.RateLimits.Single().PerSecond, Is.EqualTo(1000));
    }

    [Test]
    public async Task When_a_change_is_invalid_or_names_no_rate_limited_route_should_change_nothing_and_say_why()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes(5), ["orders-out"]);

        Assert.That(harness.Control.SetRateLimit("orders", 0, TimeSpan.FromSeconds(1)).Single(),
            Is.EqualTo("the rate limit needs at least 1 message per interval, not 0"));
        Assert.That(harness.Control.SetRateLimit("elsewhere", 5, TimeSpan.FromSeconds(1)).Single(),
            Is.EqualTo("Route 'elsewhere' has no rate limit; routes with one: orders"));
        Assert.That(harness.Control.RateLimits.Single().Messages, Is.EqualTo(5));
    }

    [Test]
    public void When_the_rate_limit_is_invalid_should_fail_at_bus_start_naming_the_route()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), Routes(0), ["orders-out"]);
        });

        Assert.That(failure!.Message, Does.Contain("Route 'orders', endpoint: RateLimit: the rate limit needs at least 1 message per interval, not 0"));
    }
}
