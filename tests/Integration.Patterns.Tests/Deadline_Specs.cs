using System.Collections.Concurrent;
using System.Text;
using Integration.Patterns.Deadlines;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Enrichment;
using Integration.Patterns.Routing;
using Integration.Patterns.SmartProxy;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

public sealed record StockQuery(string Sku);

public sealed record StockLevel(string Sku, int OnHand);

public sealed record StockedOrder(string Id, int OnHand);

/// <summary>
/// Deadline budgets on both transports: the deadline travels as a header, a route or consumer never starts work whose
/// deadline has passed (the message goes to <c>_skipped</c> with the reason, a request's caller gets a fault), and each
/// hop's timeout is what is left, capped by its own budget, so the timeouts shrink along the way.
/// </summary>
[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class Deadline_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static async Task SendWithDeadline<T>(IBus bus, string queue, T message, string? deadline)
        where T : class
    {
        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
        await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
        {
            if (deadline is not null)
                send.Headers.Set(MessageDeadline.Header, deadline);
        }));
    }

    static string Past => MessageDeadline.After(TimeSpan.FromMinutes(-1)).ToString();

    [Test]
    public async Task When_a_routed_message_has_passed_its_deadline_should_skip_it_with_the_reason_and_go_on()
    {
        var log = new ArrivalLog();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), routes => routes.From<Order>("orders", r => r.To("orders-out")), ["orders-out"],
            cfg => log.Listen(cfg, "orders_skipped"));

        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("late", "x", 1), Past);
        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("on-time", "x", 1), MessageDeadline.After(TimeSpan.FromMinutes(1)).ToString());

        var skipped = await log.Next("orders_skipped");
        Assert.That(skipped.Header(MessageDeadline.SkippedReasonHeader), Does.Contain("passed").And.Contain("before 'orders' could start"));
        Assert.That(skipped.Header("MT-Reason"), Is.EqualTo("deadline-exceeded"));
        Assert.That(Encoding.UTF8.GetString(skipped.Body), Does.Contain("\"late\""), "the skipped message is kept as it came");
        var routed = await harness.WaitFor("orders-out");
        Assert.That(routed.Select(c => c.Message.Id), Is.EqualTo(new[] { "on-time" }), "only the message in time is routed; the route goes on");
    }

    [Test]
    public async Task When_a_route_has_a_budget_should_carry_the_sooner_deadline_on()
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r.To("orders-out"), e => e.Deadline = TimeSpan.FromSeconds(20)), ["orders-out"]);
        var far = MessageDeadline.After(TimeSpan.FromHours(1));

        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("far", "x", 1), far.ToString());
        await harness.Send("orders", new Order("none", "x", 1));

        var routed = await harness.WaitFor("orders-out", 2);
        var carried = routed.ToDictionary(c => c.Message.Id, c => MessageDeadline.From(c.Headers));
        Assert.That(carried["far"], Is.Not.Null, "the deadline travels on");
        Assert.That(carried["far"]!.At, Is.LessThan(far.At), "the route's budget (20 s) is sooner than the hour the message had left");
        Assert.That(carried["none"], Is.Not.Null, "a message without a deadline gets the route's budget");
        Assert.That(carried["none"]!.Remaining(), Is.LessThanOrEqualTo(TimeSpan.FromSeconds(20)));
    }

    [Test]
    public async Task When_a_route_gets_a_malformed_deadline_should_move_it_to_the_error_queue_with_the_reason()
    {
        var log = new ArrivalLog();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), routes => routes.From<Order>("orders", r => r.To("orders-out")), ["orders-out"],
            cfg => log.Listen(cfg, "orders_error"));

        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("bad", "x", 1), "tomorrow-ish");

        var error = await log.Next("orders_error");
        Assert.That(error.Header("MT-Fault-Message"), Does.Contain("Integration-Deadline header 'tomorrow-ish' is not an ISO-8601 UTC time"));
    }

    sealed class Calls
    {
        public ConcurrentQueue<(StockQuery Query, MessageDeadline? Deadline, DateTimeOffset ReceivedAt)> Seen { get; } = new();
    }

    static void StockService(IBusFactoryConfigurator cfg, Calls calls) =>
        cfg.ReceiveEndpoint("stock", e =>
        {
            e.UseMessageDeadlines();
            e.Handler<StockQuery>(c =>
            {
                calls.Seen.Enqueue((c.Message, MessageDeadline.Of(c), DateTimeOffset.UtcNow));
                return c.RespondAsync(new StockLevel(c.Message.Sku, 7));
            });
        });

    [Test]
    public async Task When_a_request_has_passed_its_deadline_should_skip_it_and_fault_the_caller()
    {
        var calls = new Calls();
        var log = new ArrivalLog();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), _ => { }, [], cfg =>
        {
            StockService(cfg, calls);
            log.Listen(cfg, "stock_skipped");
        });
        var client = harness.Harness.Bus.CreateRequestClient<StockQuery>(new Uri("queue:stock"), RequestTimeout.After(s: 30));

        var exception = Assert.ThrowsAsync<RequestFaultException>(async () =>
            await client.GetResponse<StockLevel>(new StockQuery("PUMP-1"), x => x.UseExecute(s => s.Headers.Set(MessageDeadline.Header, Past))));

        Assert.That(exception!.Fault?.Exceptions.Single().Message, Does.Contain("passed").And.Contain("'stock'"), "the caller hears why, at once, not after its own timeout");
        var skipped = await log.Next("stock_skipped");
        Assert.That(skipped.Header(MessageDeadline.SkippedReasonHeader), Does.Contain("not processed"));
        Assert.That(calls.Seen, Is.Empty, "the service never started the work");
        var response = await client.GetResponse<StockLevel>(new StockQuery("PUMP-2"));
        Assert.That(response.Message.OnHand, Is.EqualTo(7), "the service goes on with requests in time");
        Assert.That(log.At("stock_skipped"), Has.Count.EqualTo(1), "moved once, by the deadline check, not again as unconsumed");
    }

    [Test]
    public async Task When_a_request_is_sent_within_a_budget_should_wait_what_is_left_and_carry_the_hops_deadline()
    {
        var calls = new Calls();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), _ => { }, [], cfg => StockService(cfg, calls));
        var factory = harness.Harness.Bus.CreateClientFactory();

        var response = await factory.GetResponseWithin<StockQuery, StockLevel>(new Uri("queue:stock"), new StockQuery("PUMP-3"), TimeSpan.FromSeconds(15));

        Assert.That(response.Message.OnHand, Is.EqualTo(7));
        var seen = calls.Seen.Single();
        Assert.That(seen.Deadline, Is.Not.Null, "the request carries its hop's deadline");
        Assert.That(seen.Deadline!.At - seen.ReceivedAt, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(15)));
    }

    [Test]
    public void When_the_deadline_has_passed_should_not_send_the_request()
    {
        var exception = Assert.Throws<DeadlineExceededException>(() => MessageDeadline.HopTimeout(MessageDeadline.After(TimeSpan.FromSeconds(-5)), TimeSpan.FromSeconds(10)));
        Assert.That(exception!.Message, Does.Contain("the hop was not started"));
        Assert.That(MessageDeadline.HopTimeout(MessageDeadline.After(TimeSpan.FromHours(1)), TimeSpan.FromSeconds(10)), Is.EqualTo(TimeSpan.FromSeconds(10)),
            "the hop's own budget caps a long deadline");
        Assert.That(MessageDeadline.HopTimeout(MessageDeadline.After(TimeSpan.FromSeconds(3)), TimeSpan.FromSeconds(10)), Is.LessThanOrEqualTo(TimeSpan.FromSeconds(3)),
            "a short deadline shortens the hop");
    }

    [Test]
    public async Task When_an_enricher_asks_a_service_should_shrink_each_hops_timeout_to_what_is_left()
    {
        var calls = new Calls();
        await using var harness = await RouteHarness<StockedOrder>.StartAsync(new TTransport(),
            routes => routes.From<Order>("orders", r => r
                    .EnrichByRequest<Order, StockQuery, StockLevel, StockedOrder>("stock", o => new StockQuery(o.Kind), (o, s) => new StockedOrder(o.Id, s.OnHand),
                        timeout: TimeSpan.FromSeconds(10))
                    .To("orders-out"),
                e => e.Deadline = TimeSpan.FromSeconds(25)),
            ["orders-out"], cfg => StockService(cfg, calls));
        var soon = MessageDeadline.After(TimeSpan.FromSeconds(8));

        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("soon", "PUMP-1", 1), soon.ToString());
        await harness.WaitFor("orders-out");
        await SendWithDeadline(harness.Harness.Bus, "orders", new Order("far", "PUMP-2", 1), MessageDeadline.After(TimeSpan.FromHours(1)).ToString());
        var routed = await harness.WaitFor("orders-out", 2);

        var seen = calls.Seen.ToList();
        Assert.Multiple(() =>
        {
            Assert.That(routed.Select(r => r.Message.OnHand), Is.All.EqualTo(7));
            Assert.That(seen[0].Deadline, Is.EqualTo(soon), "8 s left is less than the route's 25 s and the enricher's 10 s: the service works under the message's own deadline");
            Assert.That(seen[1].Deadline!.At - seen[1].ReceivedAt, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(10)), "an hour left: the enricher's 10 s cap");
            Assert.That(MessageDeadline.From(routed[0].Headers), Is.EqualTo(soon), "what the route sends on carries the deadline too");
        });
    }

    [Test]
    public async Task When_a_smart_proxy_call_has_passed_its_deadline_should_not_send_it()
    {
        var calls = new Calls();
        await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(), _ => { }, [], cfg => StockService(cfg, calls));
        using var registry = new SmartProxyRegistry(harness.Harness.Bus);
        using var proxy = registry.Create(new Uri("queue:stock"), new SmartProxyOptions { Name = "stock", Timeout = TimeSpan.FromSeconds(10) });

        Assert.ThrowsAsync<DeadlineExceededException>(() => proxy.RequestAsync<StockQuery, StockLevel>(new StockQuery("X"), MessageDeadline.After(TimeSpan.FromSeconds(-1))));
        var level = await proxy.RequestAsync<StockQuery, StockLevel>(new StockQuery("Y"), MessageDeadline.After(TimeSpan.FromSeconds(30)));

        Assert.That(level.OnHand, Is.EqualTo(7));
        Assert.That(calls.Seen.Select(s => s.Query.Sku), Is.EqualTo(new[] { "Y" }), "the late call was never sent");
        Assert.That(calls.Seen.Single().Deadline!.At - calls.Seen.Single().ReceivedAt, Is.LessThanOrEqualTo(TimeSpan.FromSeconds(10)), "capped by the proxy's timeout");
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed), "a passed deadline is not the service's failure");
    }

    [Test]
    public void When_budgets_do_not_shrink_should_name_the_settings()
    {
        var failures = new DeadlineBudgets { Service = TimeSpan.FromSeconds(25), Database = TimeSpan.Zero }.Validate().ToList();

        Assert.That(failures, Has.Some.Contains("Integration:Deadlines:Service (00:00:25) must be shorter than Integration:Deadlines:Gateway (00:00:25)"));
        Assert.That(failures, Has.Some.Contains("Integration:Deadlines:Database must be positive"));
        Assert.That(new DeadlineBudgets().Validate(), Is.Empty, "30 s > 25 s > 20 s > 15 s");
    }

    [Test]
    public void When_a_route_budget_is_not_positive_should_not_start()
    {
        var exception = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Order>.StartAsync(new TTransport(),
                routes => routes.From<Order>("orders", r => r.To("orders-out"), e => e.Deadline = TimeSpan.Zero), []);
        });
        Assert.That(exception!.Message, Does.Contain("Route 'orders', endpoint: Deadline must be positive"));
    }
}
