using System.Collections.Concurrent;
using Integration.Host.Fulfillment;
using Integration.Testing;
using MassTransit;

namespace Integration.Reliability.Tests.Support;

/// <summary>
/// Watches the business effects of the fulfillment saga from outside the host, as another subscriber on the same broker:
/// every command the saga sent and every reservation, purchase order and final outcome published, per order, by message id. A redelivered copy of one
/// message (same id) is one effect; two messages (two ids) for the same order and step are an effect applied twice.
/// </summary>
public sealed class EffectObserver : IAsyncDisposable
{
    readonly IBusControl _bus;
    readonly ConcurrentDictionary<(Guid OrderId, string Effect), ConcurrentDictionary<Guid, int>> _effects = new();
    readonly ConcurrentDictionary<Guid, int> _redelivered = new();   // per order: copies beyond the first (kept as they arrive, so a soak's 25k orders are counted in O(1) each)

    EffectObserver(IBusControl bus) => _bus = bus;

    /// <summary>Starts a bus of its own on <paramref name="broker"/> (straight to the broker, never through a fault proxy).</summary>
    public static async Task<EffectObserver> StartAsync(TestBroker broker)
    {
        ArgumentNullException.ThrowIfNull(broker);
        EffectObserver? observer = null;
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            broker.ConfigureHost(cfg);
            cfg.ReceiveEndpoint("reliability-observer", e =>
            {
                e.PrefetchCount = 64;
                e.Handler<PartsReserved>(c => observer!.Record(c.Message.OrderId, "reserved", c.MessageId));
                e.Handler<PurchaseOrderCreated>(c => observer!.Record(c.Message.OrderId, "purchase-order", c.MessageId));
                e.Handler<OrderFulfilled>(c => observer!.Record(c.Message.OrderId, "outcome", c.MessageId));
                e.Handler<OrderFulfillmentFailed>(c => observer!.Record(c.Message.OrderId, "outcome", c.MessageId));
                // The saga's commands, to tell a command never sent from one sent and never answered.
                e.Handler<ReserveParts>(c => observer!.Record(c.Message.OrderId, "command:Reserving", c.MessageId));
                e.Handler<CreatePurchaseOrder>(c => observer!.Record(c.Message.OrderId, "command:CreatingPurchaseOrder", c.MessageId));
                e.Handler<UpdateInventory>(c => observer!.Record(c.Message.OrderId, "command:UpdatingInventory", c.MessageId));
                e.Handler<CancelPurchaseOrder>(c => observer!.Record(c.Message.OrderId, "command:CancellingPurchaseOrder", c.MessageId));
                e.Handler<ReleaseReservation>(c => observer!.Record(c.Message.OrderId, "command:ReleasingReservation", c.MessageId));
            });
        });
        observer = new EffectObserver(bus);
        await bus.StartAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token).ConfigureAwait(false);
        return observer;
    }

    Task Record(Guid orderId, string effect, Guid? messageId)
    {
        var copies = _effects.GetOrAdd((orderId, effect), _ => new ConcurrentDictionary<Guid, int>())
            .AddOrUpdate(messageId ?? Guid.Empty, 1, (_, n) => n + 1);
        if (copies > 1)
            _redelivered.AddOrUpdate(orderId, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }

    /// <summary>Distinct messages (by id) that announced <paramref name="effect"/> for <paramref name="orderId"/>.</summary>
    public int Distinct(Guid orderId, string effect) => _effects.TryGetValue((orderId, effect), out var ids) ? ids.Count : 0;

    /// <summary>Copies received beyond the first of each message (broker redeliveries) for <paramref name="orderId"/>.</summary>
    public int Redelivered(Guid orderId) => _redelivered.TryGetValue(orderId, out var n) ? n : 0;

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await _bus.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token).ConfigureAwait(false);
}
