using System.Collections.Concurrent;
using Integration.Patterns.Routing;
using Integration.Patterns.RoutingSlips;
using Integration.Testing;
using MassTransit;
using MassTransit.Courier.Contracts;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

public record PartsArguments
{
    public string Sku { get; init; } = "";
    public int Quantity { get; init; }
}

// One arguments type per activity: MassTransit keys activity endpoints by it (the catalog refuses shared ones).
public sealed record ReserveArguments : PartsArguments;

public sealed record PurchaseOrderArguments : PartsArguments;

public sealed record NotifyArguments : PartsArguments;

public sealed record InspectArguments : PartsArguments;

public sealed record ReservationLog(string Sku, int Quantity);

public sealed record PurchaseOrderLog(string PurchaseOrder);

/// <summary>What the activities did, per slip, in order.</summary>
public sealed class SlipJournal
{
    readonly ConcurrentDictionary<Guid, ConcurrentQueue<string>> _entries = new();

    public void Add(Guid trackingNumber, string entry) => _entries.GetOrAdd(trackingNumber, _ => new ConcurrentQueue<string>()).Enqueue(entry);

    public IReadOnlyList<string> Of(Guid trackingNumber) => _entries.TryGetValue(trackingNumber, out var q) ? q.ToList() : [];
}

public sealed class ReservePartsActivity(SlipJournal journal) : IActivity<ReserveArguments, ReservationLog>
{
    public async Task<ExecutionResult> Execute(ExecuteContext<ReserveArguments> context)
    {
        journal.Add(context.TrackingNumber, $"execute:ReserveParts:{context.Arguments.Quantity}");
        return context.Completed(new ReservationLog(context.Arguments.Sku, context.Arguments.Quantity));
    }

    public async Task<CompensationResult> Compensate(CompensateContext<ReservationLog> context)
    {
        journal.Add(context.TrackingNumber, $"compensate:ReserveParts:{context.Log.Quantity}");
        return context.Compensated();
    }
}

public sealed class CreatePurchaseOrderActivity(SlipJournal journal) : IActivity<PurchaseOrderArguments, PurchaseOrderLog>
{
    public async Task<ExecutionResult> Execute(ExecuteContext<PurchaseOrderArguments> context)
    {
        journal.Add(context.TrackingNumber, "execute:CreatePurchaseOrder");
        if (context.Arguments.Sku.StartsWith("FAIL-PO", StringComparison.Ordinal))
            throw new InvalidOperationException($"purchasing refused {context.Arguments.Sku}");
        return context.Completed(new PurchaseOrderLog($"PO-{context.Arguments.Sku}"));
    }

    public async Task<CompensationResult> Compensate(CompensateContext<PurchaseOrderLog> context)
    {
        journal.Add(context.TrackingNumber, $"compensate:CreatePurchaseOrder:{context.Log.PurchaseOrder}");
        return context.Compensated();
    }
}

public sealed class NotifyDeviceActivity(SlipJournal journal) : IExecuteActivity<NotifyArguments>
{
    public async Task<ExecutionResult> Execute(ExecuteContext<NotifyArguments> context)
    {
        journal.Add(context.TrackingNumber, "execute:NotifyDevice");
        if (context.Arguments.Sku.StartsWith("FAIL-NOTIFY", StringComparison.Ordinal))
            throw new InvalidOperationException("device unreachable");
        return context.Completed();
    }
}

public sealed class InspectActivity(SlipJournal journal) : IExecuteActivity<InspectArguments>
{
    public async Task<ExecutionResult> Execute(ExecuteContext<InspectArguments> context)
    {
        journal.Add(context.TrackingNumber, "execute:Inspect");
        return context.Completed();
    }
}

public sealed class SharedOneActivity : IExecuteActivity<PartsArguments>
{
    public Task<ExecutionResult> Execute(ExecuteContext<PartsArguments> context) => Task.FromResult(context.Completed());
}

public sealed class SharedTwoActivity : IExecuteActivity<PartsArguments>
{
    public Task<ExecutionResult> Execute(ExecuteContext<PartsArguments> context) => Task.FromResult(context.Completed());
}

[TestFixture(typeof(InMemory))]
[TestFixture(typeof(RabbitMq), Category = "Integration")]
public sealed class RoutingSlip_Specs<TTransport>
    where TTransport : ITransport, new()
{
    static void Itineraries(IItinerariesBuilder itineraries) => itineraries.Itinerary("parts-order", i => i
        .Activity<ReservePartsActivity, ReserveArguments, ReservationLog>()
        .Detour("inspection", d => d.ExecuteActivity<InspectActivity, InspectArguments>())
        .Activity<CreatePurchaseOrderActivity, PurchaseOrderArguments, PurchaseOrderLog>()
        .ExecuteActivity<NotifyDeviceActivity, NotifyArguments>()
        .WireTap("parts-order-events", RoutingSlipEvents.Completed | RoutingSlipEvents.Faulted));

    sealed class Slips : IAsyncDisposable
    {
        readonly ITransport _transport = new TTransport();
        public ConcurrentDictionary<Guid, string> Events { get; } = new();
        public ServiceProvider Provider { get; private set; } = null!;
        public SlipJournal Journal => Provider.GetRequiredService<SlipJournal>();
        public IItineraries Itineraries => Provider.GetRequiredService<IItineraries>();
        public RouteControl Control => Provider.GetRequiredService<RouteControl>();

        public static async Task<Slips> StartAsync(Action<IItinerariesBuilder> itineraries)
        {
            var slips = new Slips();
            await slips._transport.StartAsync();
            slips.Provider = new ServiceCollection()
                .AddSingleton<SlipJournal>()
                .AddMassTransitTestHarness(x =>
                {
                    x.AddIntegrationItineraries(itineraries);
                    slips._transport.Use(x, (context, cfg) =>
                    {
                        cfg.ConfigureIntegrationRoutes(context);
                        cfg.ReceiveEndpoint("parts-order-events", e =>
                        {
                            e.Handler<RoutingSlipCompleted>(c => Record(c.Message.TrackingNumber, "Completed"));
                            e.Handler<RoutingSlipFaulted>(c => Record(c.Message.TrackingNumber,
                                "Faulted: " + string.Join("; ", c.Message.ActivityExceptions.Select(x => $"{x.Name}: {x.ExceptionInfo.Message}"))));
                        });
                        switch (cfg)
                        {
                            case IRabbitMqBusFactoryConfigurator rabbit:
                                rabbit.ConfigureEndpoints(context);
                                break;
                            case IInMemoryBusFactoryConfigurator memory:
                                memory.ConfigureEndpoints(context);
                                break;
                        }
                    });
                })
                .BuildServiceProvider(true);
            await slips.Provider.GetRequiredService<ITestHarness>().Start();
            return slips;

            Task Record(Guid trackingNumber, string what)
            {
                slips.Events[trackingNumber] = what;
                return Task.CompletedTask;
            }
        }

        public async Task<string> Outcome(Guid trackingNumber)
        {
            Assert.That(await Eventually.TrueAsync(() => Task.FromResult(Events.ContainsKey(trackingNumber)), TimeSpan.FromSeconds(15)), Is.True,
                () => $"no Completed/Faulted event for {trackingNumber}; journal: {string.Join(", ", Journal.Of(trackingNumber))}");
            return Events[trackingNumber];
        }

        public async ValueTask DisposeAsync()
        {
            await Provider.GetRequiredService<ITestHarness>().Stop();
            await Provider.DisposeAsync();
            await _transport.DisposeAsync();
        }
    }

    [Test]
    public async Task When_every_activity_succeeds_should_visit_each_in_order_and_tap_the_completion()
    {
        await using var slips = await Slips.StartAsync(Itineraries);

        var slip = await slips.Itineraries.Execute("parts-order", new { Sku = "BRK-1", Quantity = 3 });

        Assert.That(await slips.Outcome(slip), Is.EqualTo("Completed"));
        Assert.That(slips.Journal.Of(slip), Is.EqualTo(new[] { "execute:ReserveParts:3", "execute:CreatePurchaseOrder", "execute:NotifyDevice" }));
    }

    [Test]
    public async Task When_a_later_activity_fails_should_compensate_the_finished_ones_newest_first()
    {
        await using var slips = await Slips.StartAsync(Itineraries);

        var slip = await slips.Itineraries.Execute("parts-order", new { Sku = "FAIL-NOTIFY-7", Quantity = 2 });

        Assert.That(await slips.Outcome(slip), Is.EqualTo("Faulted: NotifyDevice: device unreachable"));
        Assert.That(slips.Journal.Of(slip), Is.EqualTo(new[]
        {
            "execute:ReserveParts:2", "execute:CreatePurchaseOrder", "execute:NotifyDevice",
            "compensate:CreatePurchaseOrder:PO-FAIL-NOTIFY-7", "compensate:ReserveParts:2",
        }));
    }

    [Test]
    public async Task When_the_second_activity_fails_should_compensate_only_the_first()
    {
        await using var slips = await Slips.StartAsync(Itineraries);

        var slip = await slips.Itineraries.Execute("parts-order", new Dictionary<string, object> { ["Sku"] = "FAIL-PO-1", ["Quantity"] = 5 });

        Assert.That(await slips.Outcome(slip), Does.StartWith("Faulted: CreatePurchaseOrder: purchasing refused FAIL-PO-1"));
        Assert.That(slips.Journal.Of(slip), Is.EqualTo(new[] { "execute:ReserveParts:5", "execute:CreatePurchaseOrder", "compensate:ReserveParts:5" }));
    }

    [Test]
    public async Task When_the_detour_is_switched_on_should_revise_the_itinerary_through_its_activities()
    {
        await using var slips = await Slips.StartAsync(Itineraries);
        Assert.That(slips.Control.SetSwitch("parts-order", "detour:inspection", true), Is.True);

        var slip = await slips.Itineraries.Execute("parts-order", new { Sku = "BRK-2", Quantity = 1 });

        Assert.That(await slips.Outcome(slip), Is.EqualTo("Completed"));
        Assert.That(slips.Journal.Of(slip), Is.EqualTo(new[] { "execute:ReserveParts:1", "execute:Inspect", "execute:CreatePurchaseOrder", "execute:NotifyDevice" }));
    }

    [Test]
    public async Task When_the_host_starts_should_list_the_itinerary_and_its_detour_on_the_control_bus()
    {
        await using var slips = await Slips.StartAsync(Itineraries);

        var route = slips.Control.Routes.Single(r => r.Name == "parts-order");
        Assert.That(route.Steps.Select(s => $"{s.Kind} {s.Name}"), Is.EqualTo(new[]
        {
            "Activity ReserveParts", "Detour detour:inspection", "DetourActivity detour:inspection/Inspect", "Activity CreatePurchaseOrder",
            "ExecuteActivity NotifyDevice", "WireTap wiretap:parts-order-events",
        }));
        Assert.That(slips.Control.Switches.Single(s => s.Route == "parts-order").Enabled, Is.False);
    }

    [Test]
    public async Task When_an_unknown_itinerary_is_planned_should_name_the_declared_ones()
    {
        await using var slips = await Slips.StartAsync(Itineraries);

        var failure = Assert.Throws<ArgumentException>(() => slips.Itineraries.Plan("nope", Guid.NewGuid()));

        Assert.That(failure!.Message, Does.Contain("No itinerary 'nope'; declared: parts-order"));
    }

    [TestCase("empty", "Itinerary 'empty': no steps")]
    [TestCase("detour-last", "Itinerary 'detour-last': the last step is detour 'check'")]
    [TestCase("empty-detour", "Itinerary 'empty-detour' step 2 (check): detour 'check' has no steps")]
    [TestCase("bad-tap", "Itinerary 'bad-tap' wire tap: 'no spaces' is not a valid queue name")]
    [TestCase("shared-arguments", "Itinerary 'shared-arguments': activities SharedOneActivity and SharedTwoActivity share the arguments type PartsArguments")]
    public void When_an_itinerary_is_wrong_should_fail_at_start_naming_it(string name, string expected)
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var slips = await Slips.StartAsync(b => b.Itinerary(name, i =>
            {
                switch (name)
                {
                    case "detour-last":
                        i.Activity<ReservePartsActivity, ReserveArguments, ReservationLog>().Detour("check", d => d.ExecuteActivity<InspectActivity, InspectArguments>());
                        break;
                    case "empty-detour":
                        i.Activity<ReservePartsActivity, ReserveArguments, ReservationLog>().Detour("check", _ => { }).ExecuteActivity<NotifyDeviceActivity, NotifyArguments>();
                        break;
                    case "shared-arguments":
                        i.ExecuteActivity<SharedOneActivity, PartsArguments>().ExecuteActivity<SharedTwoActivity, PartsArguments>();
                        break;
                    case "bad-tap":
                        i.Activity<ReservePartsActivity, ReserveArguments, ReservationLog>().WireTap("no spaces");
                        break;
                }
            }));
        });

        Assert.That(failure!.Message, Does.Contain(expected));
    }
}
