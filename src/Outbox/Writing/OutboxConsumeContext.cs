using Integration.Outbox.Model;
using MassTransit;
using MassTransit.Context;
using MassTransit.Middleware;
using Microsoft.EntityFrameworkCore;

namespace Integration.Outbox.Writing;

/// <summary>
/// A consume context whose <c>Publish</c>, <c>Send</c> (and a state machine's <c>Publish</c>/<c>Send</c> activities)
/// become outbox rows on the outbox's DbContext instead of broker calls: they commit with whatever
/// that DbContext's transaction commits (a saga's new state, a consumer's writes) and the relay delivers them. A crash
/// between the commit and the broker can then lose nothing. MassTransit's send pipe still runs for each message
/// (MessageId, CorrelationId, the caller's pipe).
/// </summary>
/// <typeparam name="T">The consumed message.</typeparam>
sealed class OutboxConsumeContext<T> : ConsumeContextProxy<T>
    where T : class
{
    /// <summary>
    /// Wraps <paramref name="context"/>: its receive context gets outbox endpoint providers, so every context MassTransit
    /// builds on this one (the saga's, a consumer's) publishes and sends through them, as its in-memory outbox does.
    /// </summary>
    public OutboxConsumeContext(ConsumeContext<T> context, EntityFrameworkOutbox outbox)
        : base(context)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(outbox);
        var services = Services(context);
        ReceiveContext = new RowsReceiveContext(context.ReceiveContext, new OutboxRows(outbox, services, publish: true), new OutboxRows(outbox, services, publish: false));
    }

    static IServiceProvider Services(ConsumeContext context) =>
        context.TryGetPayload<IServiceProvider>(out var provider) ? provider : NoServices.Instance;

    sealed class NoServices : IServiceProvider
    {
        public static readonly NoServices Instance = new();

        public object? GetService(Type serviceType) => null;
    }

    /// <summary>Rows on <paramref name="db"/>: a fresh <see cref="EntityFrameworkOutbox"/> over the caller's DbContext.</summary>
    public static OutboxConsumeContext<T> Create(ConsumeContext<T> context, DbContext db) =>
        new(context, new EntityFrameworkOutbox(db ?? throw new ArgumentNullException(nameof(db)), TimeProvider.System));

    sealed class RowsReceiveContext(ReceiveContext context, OutboxRows publishRows, OutboxRows sendRows) : ReceiveContextProxy(context)
    {
        public override IPublishEndpointProvider PublishEndpointProvider { get; } =
            new MassTransit.Middleware.Outbox.OutboxPublishEndpointProvider(publishRows, context.PublishEndpointProvider);

        public override ISendEndpointProvider SendEndpointProvider { get; } =
            new MassTransit.Middleware.Outbox.OutboxSendEndpointProvider(sendRows, context.SendEndpointProvider);
    }
}

/// <summary>MassTransit's seam for an outbox's sends (<see cref="OutboxSendContext"/>): each sent message becomes a row.</summary>
sealed class OutboxRows(EntityFrameworkOutbox outbox, IServiceProvider provider, bool publish) : OutboxSendContext
{
    /// <summary>MassTransit ran its send pipe (message id, correlation id, headers, the caller's pipe); keep what the relay needs.</summary>
    public Task AddSend<T>(SendContext<T> context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        var messageType = typeof(T).IsInterface ? context.Message.GetType() : typeof(T);
        if (messageType.IsInterface || messageType.Assembly.IsDynamic)
            throw new NotSupportedException($"The outbox stores messages as their .NET type: publish a class or record, not {typeof(T).Name} built from values");
        var destination = publish ? null
            : context.DestinationAddress?.ToString() ?? throw new InvalidOperationException($"A {messageType.Name} sent through the outbox has no destination address");
        outbox.Add(destination, context.Message, messageType, context.MessageId ?? Guid.CreateVersion7(), context.CorrelationId, OutboxEnvelope.From(context));
        return Task.CompletedTask;
    }

    public object? GetService(Type serviceType) => provider.GetService(serviceType);
}
