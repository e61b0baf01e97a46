using Integration.Patterns.History;
using Integration.Patterns.Splitting;
using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>Headers a route adds to everything it sends after an envelope step (priority, time to live, custom headers).</summary>
internal sealed class RouteEnvelope
{
    readonly List<Action<SendContext>> _apply = [];

    internal void Add(Action<SendContext> apply)
    {
        lock (_apply)
            _apply.Add(apply);
    }

    /// <summary>What the envelope steps declared so far.</summary>
    internal Action<SendContext>[] Snapshot()
    {
        lock (_apply)
            return _apply.ToArray();
    }

    /// <summary>The envelope of the message being consumed.</summary>
    public static RouteEnvelope Of(ConsumeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetOrAddPayload(() => new RouteEnvelope());
    }
}

/// <summary>
/// What a message a step sends carries besides its body, as it stood when the step ran: the message history up to the
/// step, the envelope headers declared before it, the sequence position. A step whose send runs alongside the rest of the
/// route (a wire tap) captures it first, so that what later steps add never shows on its copy.
/// </summary>
internal sealed class RouteSendState
{
    readonly string _history;
    readonly Action<SendContext>[] _envelope;
    readonly MessageSequence? _sequence;
    readonly Deadlines.MessageDeadline? _deadline;

    RouteSendState(string history, Action<SendContext>[] envelope, MessageSequence? sequence, Deadlines.MessageDeadline? deadline)
    {
        _history = history;
        _envelope = envelope;
        _sequence = sequence;
        _deadline = deadline;
    }

    /// <summary>The state of the message being consumed, now.</summary>
    public static RouteSendState Capture(ConsumeContext context) =>
        new(MessageHistory.Of(context).ToJson(), RouteEnvelope.Of(context).Snapshot(), MessageSequence.Of(context), Deadlines.MessageDeadline.Of(context));

    public void ApplyTo(SendContext send)
    {
        send.Headers.Set(MessageHistory.Header, _history);
        _deadline?.WriteTo(send);   // the deadline travels on with everything the route sends
        _sequence?.WriteTo(send.Headers);
        foreach (var apply in _envelope)
            apply(send);
    }
}

/// <summary>How route steps send: to a queue by name, carrying the message history and the envelope headers.</summary>
public static class RouteSender
{
    /// <summary>Sends <paramref name="message"/> to queue <paramref name="destination"/> as a child of the consumed message.</summary>
    internal static async Task SendAsync<T>(ConsumeContext context, string destination, T message, Action<SendContext>? configure = null,
        CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(message);
        var state = RouteSendState.Capture(context);
        var received = ReceivedMessage.Of(context) is { IsRaw: true } raw && raw.IsUnchanged(message) ? raw : null;
        var address = await QueueAddressing.SendAddressAsync(context, null, destination, cancellationToken == default ? context.CancellationToken : cancellationToken).ConfigureAwait(false);
        var endpoint = await context.GetSendEndpoint(address).ConfigureAwait(false);
        await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
        {
            // A raw message nobody changed goes on byte for byte; anything else as the endpoint serializes it.
            received?.ApplyTo(send);
            state.ApplyTo(send);
            configure?.Invoke(send);
        }), cancellationToken == default ? context.CancellationToken : cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends through the bus rather than the consume context, for copies whose failure must not fail the consumed message
    /// (a wire tap, one recipient of several): MassTransit fails a message whose consume-context sends failed, even when
    /// the failure was handled. The conversation and initiator ids and the message format are carried over by hand, as the
    /// context would; <paramref name="state"/> is the history and envelope the copy carries (default: as they are now).
    /// </summary>
    internal static async Task SendIsolatedAsync<T>(IServiceProvider services, ConsumeContext context, string destination, T message,
        RouteSendState? state = null, Action<SendContext>? configure = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(message);
        state ??= RouteSendState.Capture(context);
        var received = ReceivedMessage.Of(context);
        var bus = (IBus?)services.GetService(typeof(IBus)) ?? throw new InvalidOperationException("The bus is not registered");
        var address = await QueueAddressing.SendAddressAsync(context, services, destination, context.CancellationToken).ConfigureAwait(false);
        var endpoint = await bus.GetSendEndpoint(address).ConfigureAwait(false);
        await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
        {
            // The format a send through the context would have: a raw body nobody changed byte for byte; else the route's
            // endpoint serializer (RawJson: plain JSON); else, unchanged, as it was consumed; else the bus's default. Never
            // the consumed message's serializer for another message: it writes the consumed message whatever is sent.
            var unchanged = received is not null && received.IsUnchanged(message);
            if (unchanged && received!.IsRaw)
                received.ApplyTo(send);
            else if (received?.Serializer is { } serializer)
                send.Serializer = serializer;
            else if (unchanged)
                send.Serializer = context.SerializerContext.GetMessageSerializer();

            send.ConversationId = context.ConversationId;
            send.InitiatorId = context.MessageId;
            if (context.CorrelationId is { } correlation)
                send.CorrelationId = correlation;
            state.ApplyTo(send);
            configure?.Invoke(send);
        }), context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when <paramref name="destination"/> can name a queue.</summary>
    public static bool IsValidQueueName(string? destination) =>
        !string.IsNullOrWhiteSpace(destination) && destination.Length <= 255 && !destination.Any(c => char.IsWhiteSpace(c) || c == '/' || c == '?' || c == ':');
}
