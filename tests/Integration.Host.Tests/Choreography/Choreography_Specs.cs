using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Host.Choreography;
using Integration.Host.Tests.Fulfillment;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Host.Tests.Choreography;

/// <summary>The choreography sample on the real host: one chain of events followed by its correlation id.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Choreography_Specs
{
    IntegrationTestHost<Program> _host = null!;
    readonly ConcurrentQueue<(string Type, Guid? CorrelationId, Guid? ConversationId)> _seen = new();

    [OneTimeSetUp]
    public async Task StartHost()
    {
        _host = await TestHost.StartAsync("choreography");
        var handle = _host.Services.GetRequiredService<IBus>().ConnectReceiveEndpoint("test-choreography-trail", e =>
        {
            // One at a time: the trail queue holds the events in causal order, concurrent handlers would record them in any order.
            e.ConcurrentMessageLimit = 1;
            Observe<FieldPartsRequested>(e);
            Observe<FieldPartsReserved>(e);
            Observe<FieldPartsUnavailable>(e);
            Observe<ShipmentScheduled>(e);
            Observe<ShipmentFailed>(e);
            Observe<DeviceNotified>(e);
            Observe<DeviceNotificationFailed>(e);
            Observe<ShipmentCancelled>(e);
            Observe<FieldReservationReleased>(e);
        });
        await handle.Ready;
    }

    void Observe<T>(IReceiveEndpointConfigurator endpoint)
        where T : class =>
        endpoint.Handler<T>(context =>
        {
            _seen.Enqueue((typeof(T).Name, context.CorrelationId, context.ConversationId));
            return Task.CompletedTask;
        });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    async Task<Guid> Request(string deviceId, string sku)
    {
        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/field-requests", UriKind.Relative),
            new { deviceId, site = "plant-4", sku, quantity = 2 });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("requestId").GetGuid();
    }

    async Task<List<(string Type, Guid? CorrelationId, Guid? ConversationId)>> Chain(Guid requestId, string last)
    {
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(_seen.Any(s => s.CorrelationId == requestId && s.Type == last)), TimeSpan.FromSeconds(20)),
            Is.True, () => $"the chain never reached {last}; seen: {string.Join(", ", _seen.Where(s => s.CorrelationId == requestId).Select(s => s.Type))}");
        await Task.Delay(TimeSpan.FromMilliseconds(500)); // nothing may follow the end of the chain
        return _seen.Where(s => s.CorrelationId == requestId).ToList();
    }

    [Test]
    public async Task When_every_service_succeeds_should_chain_from_request_to_device_notification_under_one_correlation_id()
    {
        var requestId = await Request("truck-12", "PUMP-1");

        var chain = await Chain(requestId, nameof(DeviceNotified));

        Assert.That(chain.Select(c => c.Type), Is.EqualTo(new[]
        {
            nameof(FieldPartsRequested), nameof(FieldPartsReserved), nameof(ShipmentScheduled), nameof(DeviceNotified),
        }));
        Assert.That(chain.Select(c => c.ConversationId).Distinct().Count(), Is.EqualTo(1), "the chain must be one conversation");
    }

    [Test]
    public async Task When_the_device_cannot_be_notified_should_cancel_the_shipment_then_release_the_reservation()
    {
        var requestId = await Request("offline-7", "PUMP-1");

        var chain = await Chain(requestId, nameof(FieldReservationReleased));

        Assert.That(chain.Select(c => c.Type), Is.EqualTo(new[]
        {
            nameof(FieldPartsRequested), nameof(FieldPartsReserved), nameof(ShipmentScheduled), nameof(DeviceNotificationFailed),
            nameof(ShipmentCancelled), nameof(FieldReservationReleased),
        }));
    }

    [Test]
    public async Task When_shipping_fails_should_release_the_reservation()
    {
        var requestId = await Request("truck-12", "FAIL-SHIP-1");

        var chain = await Chain(requestId, nameof(FieldReservationReleased));

        Assert.That(chain.Select(c => c.Type), Is.EqualTo(new[]
        {
            nameof(FieldPartsRequested), nameof(FieldPartsReserved), nameof(ShipmentFailed), nameof(FieldReservationReleased),
        }));
    }

    [Test]
    public async Task When_the_request_is_invalid_should_answer_400_naming_the_field()
    {
        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/field-requests", UriKind.Relative), new { deviceId = "d", site = "s", sku = "", quantity = 1 });
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("errors").TryGetProperty("sku", out _), Is.True);
    }
}
