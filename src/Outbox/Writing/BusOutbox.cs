using MassTransit;
using MassTransit.DependencyInjection;
using MassTransit.Middleware.Outbox;
using MassTransit.Transports;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Outbox.Writing;

/// <summary>
/// The bus outbox on MassTransit's own seam: outside a consumer, the scoped <see cref="IPublishEndpoint"/> and
/// <see cref="ISendEndpointProvider"/> (what an HTTP handler or a service gets injected) write into this scope's
/// <see cref="IOutbox"/> transaction instead of the broker, so <c>publishEndpoint.Publish(...)</c> next to
/// <c>db.SaveChangesAsync()</c> is atomic with the business data. Inside a consumer they keep MassTransit's meaning
/// (the consume context); use <see cref="IOutbox"/> with the inbox there.
/// </summary>
public static class BusOutboxRegistrationExtensions
{
    /// <summary>
    /// Routes the scoped publish/send endpoints through the transactional outbox. Call inside <c>AddMassTransit</c>,
    /// with <c>services.AddIntegrationOutbox&lt;TDbContext&gt;()</c> registered.
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationBusOutbox(this IBusRegistrationConfigurator bus)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.Replace(ServiceDescriptor.Scoped<IScopedBusContextProvider<IBus>, OutboxScopedBusContextProvider>());
        return bus;
    }
}

/// <summary>Chooses, per scope, between the consume context (inside a consumer) and the outbox (everywhere else).</summary>
sealed class OutboxScopedBusContextProvider : IScopedBusContextProvider<IBus>
{
    public OutboxScopedBusContextProvider(IServiceProvider provider, IBus bus)
    {
        // MassTransit's own provider decides whether this scope belongs to a consumer; keep its context there.
        var inner = ActivatorUtilities.CreateInstance<ScopedBusContextProvider<IBus>>(provider, bus);
        Context = inner.Context is ConsumeContextScopedBusContext or ConsumeContextScopedBusContext<IBus>
            ? inner.Context
            : new OutboxScopedBusContext(bus, provider.GetService<IOutbox>() as EntityFrameworkOutbox
                ?? throw new InvalidOperationException("AddIntegrationBusOutbox needs services.AddIntegrationOutbox<TDbContext>()"), inner.Context.ClientFactory, provider);
    }

    public ScopedBusContext Context { get; }
}

/// <summary>Publish and send endpoints whose messages become rows of the scope's outbox transaction.</summary>
sealed class OutboxScopedBusContext(IBus bus, EntityFrameworkOutbox outbox, IScopedClientFactory clientFactory, IServiceProvider provider) : ScopedBusContext
{
    // One adapter per kind: MassTransit's send context looks the same for both, the relay must know which it was.
    public ISendEndpointProvider SendEndpointProvider { get; } = new OutboxSendEndpointProvider(new OutboxRows(outbox, provider, publish: false), bus);
    public IPublishEndpoint PublishEndpoint { get; } = new PublishEndpoint(new OutboxPublishEndpointProvider(new OutboxRows(outbox, provider, publish: true), bus));
    public IScopedClientFactory ClientFactory { get; } = clientFactory;
}
