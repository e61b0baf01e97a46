using System.Collections.Concurrent;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Routing;
using Integration.Patterns.RoutingSlips;
using Integration.Testing;
using MassTransit;
using MassTransit.Courier.Contracts;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>One registration story: what AddIntegrationRoutes/AddIntegrationItineraries declare, ConfigureIntegrationRoutes creates; forgetting it stops the bus.</summary>
[TestFixture]
public sealed class RouteRegistration_Specs
{
    static void Itinerary(IItinerariesBuilder itineraries) => itineraries.Itinerary("parts-order", i => i
        .Activity<ReservePartsActivity, ReserveArguments, ReservationLog>()
        .Detour("inspection", d => d.ExecuteActivity<InspectActivity, InspectArguments>(), enabled: true)
        .ExecuteActivity<NotifyDeviceActivity, NotifyArguments>()
        .WireTap("parts-order-events", RoutingSlipEvents.Completed | RoutingSlipEvents.Faulted));

    static async Task<ServiceProvider> Start(Action<IBusRegistrationConfigurator> register, Action<IBusRegistrationContext, IInMemoryBusFactoryConfigurator> configure,
        ConcurrentQueue<string>? events = null)
    {
        var provider = new ServiceCollection()
            .AddSingleton<SlipJournal>()
            .AddMassTransitTestHarness(x =>
            {
                register(x);
                x.UsingInMemory((context, cfg) =>
                {
                    configure(context, cfg);
                    if (events is not null)
                        cfg.ReceiveEndpoint("parts-order-events", e => e.Handler<RoutingSlipCompleted>(c =>
                        {
                            events.Enqueue($"completed {c.Message.TrackingNumber}");
                            return Task.CompletedTask;
                        }));
                });
            })
            .BuildServiceProvider(true);
        try
        {
            await provider.GetRequiredService<ITestHarness>().Start();
        }
        catch
        {
            await provider.DisposeAsync();
            throw;
        }

        return provider;
    }

    [Test]
    public void When_routes_are_declared_but_never_configured_should_fail_at_bus_start_naming_the_missing_call()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var provider = await Start(x => x.AddIntegrationRoutes(r => r.From<Order>("orders", o => o.To("orders-out"))), (_, _) => { });
        });

        Assert.That(failure!.Message, Does.Contain("routes 'orders' (AddIntegrationRoutes) were declared but never configured on the bus: call cfg.ConfigureIntegrationRoutes(context) inside UsingRabbitMq/UsingInMemory"));
    }

    [Test]
    public void When_itineraries_are_declared_but_never_configured_should_fail_at_bus_start_naming_the_missing_call()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var provider = await Start(x => x.AddIntegrationItineraries(Itinerary), (context, cfg) => cfg.ConfigureEndpoints(context));
        });

        Assert.That(failure!.Message, Does.Contain("itineraries 'parts-order' (AddIntegrationItineraries) were declared but never configured on the bus: call cfg.ConfigureIntegrationRoutes(context)"));
    }

    [Test]
    public async Task When_nothing_is_declared_should_start_without_the_call()
    {
        await using var provider = await Start(_ => { }, (_, _) => { });

        Assert.That(provider.GetService<RouteControl>(), Is.Null);
    }

    [TestCase(false, TestName = "When_only_ConfigureIntegrationRoutes_is_called_should_create_the_activity_endpoints_and_run_the_slip")]
    [TestCase(true, TestName = "When_ConfigureEndpoints_runs_first_should_configure_each_activity_once_and_run_the_slip")]
    public async Task When_itineraries_are_configured(bool configureEndpointsFirst)
    {
        var events = new ConcurrentQueue<string>();
        await using var provider = await Start(x => x.AddIntegrationItineraries(Itinerary), (context, cfg) =>
        {
            if (configureEndpointsFirst)
                cfg.ConfigureEndpoints(context);
            cfg.ConfigureIntegrationRoutes(context);
        }, events);

        var slip = await provider.GetRequiredService<IItineraries>().Execute("parts-order", new { Sku = "BRK-1", Quantity = 2 });

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(events.Contains($"completed {slip}")), TimeSpan.FromSeconds(10)), Is.True, "the slip did not complete");
        Assert.That(provider.GetRequiredService<SlipJournal>().Of(slip), Is.EqualTo(new[] { "execute:ReserveParts:2", "execute:Inspect", "execute:NotifyDevice" }));
    }
}
