using Integration.Host.Fulfillment;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class RouteHarness_Specs
{
    public sealed record Ping(string Text);

    public sealed record Unhandled(string Text);

    /// <summary>A route on its own virtual host: "route-in" passes a Ping on to "route-out" with a header, and faults on "boom".</summary>
    static async Task<(TestBroker Broker, IHost Bus)> StartRouteAsync()
    {
        var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("route");
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder();
        // Started means the endpoint's queue is declared: a raw publish straight to it is not dropped.
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        builder.Services.AddMassTransit(x => x.UsingRabbitMq((_, cfg) =>
        {
            broker.ConfigureHost(cfg);
            cfg.ReceiveEndpoint("route-in", e =>
            {
                e.UseRawJsonDeserializer(isDefault: false);
                e.Handler<Ping>(async context =>
                {
                    if (context.Message.Text == "boom")
                        throw new InvalidOperationException("boom: no route for it");
                    var destination = await context.GetSendEndpoint(new Uri("queue:route-out"));
                    await destination.Send(context.Message, s => s.Headers.Set("Routed-By", "route-in"));
                });
            });
        }));
        var host = builder.Build();
        await host.StartAsync();
        return (broker, host);
    }

    [Test]
    public async Task When_a_raw_json_body_is_routed_should_observe_it_at_the_destination_with_its_content_type_and_headers()
    {
        var (broker, bus) = await StartRouteAsync();
        await using var _ = broker;
        using var __ = bus;
        await using var harness = await RouteHarness.StartAsync(broker);
        await harness.WatchAsync("route-out");

        await harness.PublishRawAsync("route-in", """{"text":"hello"}""", "application/json", new Dictionary<string, object?> { ["Source"] = "erp" });
        var routed = await harness.NextAsync("route-out");

        Assert.Multiple(() =>
        {
            Assert.That(routed.ContentType, Is.EqualTo("application/vnd.masstransit+json"));
            Assert.That(routed.Deserialize<Ping>(), Is.EqualTo(new Ping("hello")));
            Assert.That(routed.Is<Ping>(), Is.True);
            Assert.That(routed.Headers["Routed-By"], Is.EqualTo("route-in"));
            Assert.That(routed.ConversationId, Is.Not.Null);
        });
    }

    [Test]
    public async Task When_a_typed_message_faults_should_observe_the_error_queue_with_its_reason_headers()
    {
        var (broker, bus) = await StartRouteAsync();
        await using var _ = broker;
        using var __ = bus;
        await using var harness = await RouteHarness.StartAsync(broker);
        await harness.WatchAsync("route-in", "route-out");

        var messageId = await harness.PublishAsync("route-in", new Ping("boom"));
        var faulted = await harness.NextErrorAsync("route-in");

        Assert.Multiple(() =>
        {
            Assert.That(faulted.Reason, Is.EqualTo("fault"));
            Assert.That(faulted.FaultMessage, Is.EqualTo("boom: no route for it"));
            Assert.That(faulted.FaultExceptionType, Is.EqualTo("System.InvalidOperationException"));
            Assert.That(faulted.MessageId, Is.EqualTo(messageId.ToString()));
            Assert.That(harness.Received("route-out"), Is.Empty);
        });
    }

    [Test]
    public async Task When_no_consumer_takes_the_message_type_should_observe_the_skipped_queue_with_its_reason()
    {
        var (broker, bus) = await StartRouteAsync();
        await using var _ = broker;
        using var __ = bus;
        await using var harness = await RouteHarness.StartAsync(broker);
        await harness.WatchAsync("route-in");

        await harness.PublishAsync("route-in", new Unhandled("nobody"));
        var skipped = await harness.NextSkippedAsync("route-in");

        Assert.Multiple(() =>
        {
            Assert.That(skipped.Reason, Is.EqualTo("dead-letter"), string.Join(",", skipped.Headers));
            Assert.That(skipped.Is<Unhandled>(), Is.True);
        });
    }

    [Test]
    public async Task When_the_awaited_message_never_comes_should_throw_listing_what_each_watched_queue_received()
    {
        var (broker, bus) = await StartRouteAsync();
        await using var _ = broker;
        using var __ = bus;
        await using var harness = await RouteHarness.StartAsync(broker);
        await harness.WatchAsync("route-out");
        await harness.PublishAsync("route-in", new Ping("hello"));
        await harness.NextAsync("route-out");

        var timeout = Assert.ThrowsAsync<AwaitTimeoutException>(() =>
            harness.WaitForAsync("route-out", m => m.Text.Contains("goodbye", StringComparison.Ordinal), TimeSpan.FromSeconds(1)));

        Assert.Multiple(() =>
        {
            Assert.That(timeout!.Observed, Does.Contain("route-out: 1 message(s)"));
            Assert.That(timeout.Observed, Does.Contain("hello"));
            Assert.That(timeout.Observed, Does.Contain("route-out_error: nothing"));
        });
    }

    [Test]
    public async Task When_a_message_arrived_before_anything_watched_should_take_it_from_the_queue()
    {
        var (broker, bus) = await StartRouteAsync();
        await using var _ = broker;
        using var __ = bus;
        await using var harness = await RouteHarness.StartAsync(broker);

        await harness.PublishRawAsync("route-in", "a,b,c\n1,2,3", "text/csv");
        var csv = await harness.TakeAsync("route-in_error");

        Assert.Multiple(() =>
        {
            Assert.That(csv.ContentType, Is.EqualTo("text/csv"));
            Assert.That(csv.Text, Is.EqualTo("a,b,c\n1,2,3"));
            Assert.That(csv.Reason, Is.EqualTo("fault"), string.Join(",", csv.Headers));
        });
    }

    [Test]
    public async Task When_watching_a_running_host_should_observe_its_commands_and_faults_without_taking_them()
    {
        await using var host = await SampleHost.StartAsync();
        await using var harness = await RouteHarness.StartAsync(host.Broker);
        await harness.WatchAsync("fulfillment-warehouse");

        var orderId = await host.SubmitOrder(quantity: 2);
        var reserve = await harness.WaitForAsync("fulfillment-warehouse", m => m.Is<ReserveParts>() && m.Deserialize<ReserveParts>()!.OrderId == orderId);
        await harness.PublishAsync("fulfillment-warehouse", new ReserveParts(Guid.NewGuid(), null!));
        var faulted = await harness.NextErrorAsync("fulfillment-warehouse");

        Assert.Multiple(() =>
        {
            Assert.That(reserve.ConversationId, Is.Not.Null);
            Assert.That(faulted.Reason, Is.EqualTo("fault"), faulted.ToString());
            Assert.That(faulted.FaultExceptionType, Is.Not.Null);
        });
        // Watching took nothing from the host: the order goes on to be fulfilled.
        await host.Saga<OrderFulfillmentState>().WaitForStateAsync(orderId, "Completed");
    }

    [Test]
    public async Task When_a_raw_message_is_published_to_a_queue_that_does_not_exist_should_fail_instead_of_dropping_it()
    {
        await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("route-missing");
        await using var harness = await RouteHarness.StartAsync(broker);

        var failure = Assert.ThrowsAsync<InvalidOperationException>(() => harness.PublishRawAsync("no-such-queue", "{}", "application/json"));

        Assert.That(failure!.Message, Does.Contain("no-such-queue").And.Contain("could not route"));
    }
}
