using Integration.Patterns.SmartProxy;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests.SmartProxy;

public sealed record PriceQuery(string Sku);

public sealed record Price(string Sku, decimal Amount);

/// <summary>The smart proxy on the in-memory transport: correlation, timeouts with retries, the circuit breaker and its clock, validation.</summary>
[TestFixture]
public sealed class SmartProxy_Specs
{
    enum Mode { Reply, Silent, Fail }

    sealed class Clock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    ServiceProvider _provider = null!;
    volatile Mode _mode;
    int _received;
    readonly Clock _clock = new();

    [SetUp]
    public async Task Start()
    {
        _mode = Mode.Reply;
        _received = 0;
        _provider = new ServiceCollection()
            .AddIntegrationSmartProxies()
            .AddMassTransitTestHarness(x => x.UsingInMemory((context, cfg) => cfg.ReceiveEndpoint("prices", e => e.Handler<PriceQuery>(async c =>
            {
                Interlocked.Increment(ref _received);
                switch (_mode)
                {
                    case Mode.Reply:
                        await c.RespondAsync(new Price(c.Message.Sku, c.Message.Sku.Length * 1.5m));
                        break;
                    case Mode.Fail:
                        throw new InvalidOperationException("price service broken");
                }
            }))))
            .BuildServiceProvider(true);
        await _provider.GetRequiredService<ITestHarness>().Start();
    }

    [TearDown]
    public async Task Stop() => await _provider.DisposeAsync();

    SmartProxyRegistry Registry => _provider.GetRequiredService<SmartProxyRegistry>();

    Patterns.SmartProxy.SmartProxy Proxy(int retries = 1, int threshold = 2, int timeoutMs = 3000) => Registry.Create(new Uri("queue:prices"), new SmartProxyOptions
    {
        Name = $"prices-{Guid.NewGuid():N}",
        Timeout = TimeSpan.FromMilliseconds(timeoutMs),
        Retries = retries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        FailureThreshold = threshold,
        OpenDuration = TimeSpan.FromMinutes(1),
    }, _clock);

    [Test]
    public async Task When_many_callers_ask_at_once_should_give_each_the_reply_to_its_own_request()
    {
        using var proxy = Proxy();

        var replies = await Task.WhenAll(Enumerable.Range(1, 25).Select(i => proxy.RequestAsync<PriceQuery, Price>(new PriceQuery(new string('x', i)))));

        Assert.That(replies.Select(r => r.Amount), Is.EqualTo(Enumerable.Range(1, 25).Select(i => i * 1.5m)));
        Assert.That(proxy.Pending, Is.Empty);
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed));
    }

    [Test]
    public async Task When_the_service_does_not_answer_should_retry_with_new_requests_then_time_out()
    {
        using var proxy = Proxy(retries: 2, timeoutMs: 300);
        _mode = Mode.Silent;

        var call = proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a"));
        await Task.Delay(100);
        var pending = proxy.Pending;

        Assert.ThrowsAsync<RequestTimeoutException>(async () => await call);
        Assert.That(Volatile.Read(ref _received), Is.EqualTo(3), "one attempt and two retries");
        Assert.That(pending, Has.Count.EqualTo(1));
        Assert.That(pending[0], Has.Property("Attempt").EqualTo(1).And.Property("MessageType").EqualTo("PriceQuery"));
        Assert.That(proxy.Pending, Is.Empty);
    }

    [Test]
    public async Task When_calls_keep_failing_should_open_the_circuit_refuse_without_sending_and_close_after_a_good_trial()
    {
        using var proxy = Proxy(retries: 0, threshold: 2);
        _mode = Mode.Fail;

        Assert.ThrowsAsync<RequestFaultException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed));
        Assert.ThrowsAsync<RequestFaultException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Open));

        var sent = Volatile.Read(ref _received);
        var refused = Assert.ThrowsAsync<SmartProxyCircuitOpenException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));
        Assert.That(refused!.Until, Is.EqualTo(_clock.Now.AddMinutes(1)));
        Assert.That(Volatile.Read(ref _received), Is.EqualTo(sent), "an open circuit sends nothing");

        _clock.Now = _clock.Now.AddMinutes(1).AddSeconds(1);
        Assert.That(proxy.State, Is.EqualTo(CircuitState.HalfOpen));
        _mode = Mode.Reply;
        var price = await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("ab"));

        Assert.That(price.Amount, Is.EqualTo(3m));
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed));
    }

    [Test]
    public async Task When_the_trial_call_fails_should_open_the_circuit_again()
    {
        using var proxy = Proxy(retries: 0, threshold: 1);
        _mode = Mode.Fail;
        Assert.ThrowsAsync<RequestFaultException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));
        _clock.Now = _clock.Now.AddMinutes(2);

        Assert.ThrowsAsync<RequestFaultException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));

        Assert.That(proxy.State, Is.EqualTo(CircuitState.Open));
        proxy.Reset();
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed));
        await Task.CompletedTask;
    }

    [Test]
    public async Task When_the_caller_cancels_the_trial_call_should_let_the_next_call_try()
    {
        using var proxy = Proxy(retries: 0, threshold: 1);
        _mode = Mode.Fail;
        Assert.ThrowsAsync<RequestFaultException>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a")));
        _clock.Now = _clock.Now.AddMinutes(2);
        _mode = Mode.Silent;
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        Assert.CatchAsync<Exception>(async () => await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("a"), cancel.Token));

        Assert.That(proxy.State, Is.EqualTo(CircuitState.HalfOpen), "a cancelled call is not the service's failure");
        _mode = Mode.Reply;
        Assert.That((await proxy.RequestAsync<PriceQuery, Price>(new PriceQuery("ab"))).Amount, Is.EqualTo(3m), "the next trial call was refused");
        Assert.That(proxy.State, Is.EqualTo(CircuitState.Closed));
    }

    [Test]
    public void When_options_are_invalid_should_refuse_to_create_the_proxy_naming_the_setting()
    {
        var error = Assert.Throws<ArgumentException>(() => _ = Registry.Create(new Uri("queue:prices"),
            new SmartProxyOptions { Name = "prices", Timeout = TimeSpan.Zero, FailureThreshold = 0 }));

        Assert.That(error!.Message, Does.Contain("SmartProxy 'prices': Timeout must be positive").And.Contain("FailureThreshold must be at least 1"));
        Assert.That(Registry.All, Is.Empty, "a refused proxy is not listed");
    }

    [Test]
    public void When_proxies_are_created_should_list_them_by_name_until_disposed_and_refuse_a_second_of_the_same_name()
    {
        var stock = Registry.Create(new Uri("queue:stock-levels"), new SmartProxyOptions());
        using var prices = Registry.Create(new Uri("queue:prices"), new SmartProxyOptions { Name = "price-service" });

        Assert.That(Registry.All.Select(p => p.Name), Is.EqualTo(new[] { "price-service", "stock-levels" }), "named by the queue unless Name is set");
        Assert.That(Registry.Find("price-service"), Is.SameAs(prices));
        var duplicate = Assert.Throws<ArgumentException>(() => Registry.Create(new Uri("queue:other"), new SmartProxyOptions { Name = "stock-levels" }));
        Assert.That(duplicate!.Message, Does.Contain("SmartProxy 'stock-levels': a live smart proxy already has this name"));

        stock.Dispose();

        Assert.That(Registry.All.Select(p => p.Name), Is.EqualTo(new[] { "price-service" }));
        Assert.That(Registry.Find("stock-levels"), Is.Null);
    }

    [Test]
    public async Task When_two_service_providers_have_proxies_should_list_each_in_its_own_registry()
    {
        await using var other = new ServiceCollection().AddIntegrationSmartProxies().AddMassTransit(x => x.UsingInMemory()).BuildServiceProvider();
        using var mine = Proxy();

        using var theirs = other.GetRequiredService<SmartProxyRegistry>().Create(new Uri("queue:theirs"), new SmartProxyOptions());

        Assert.That(Registry.All, Is.EqualTo(new[] { mine }));
        Assert.That(other.GetRequiredService<SmartProxyRegistry>().All, Is.EqualTo(new[] { theirs }));
    }
}
