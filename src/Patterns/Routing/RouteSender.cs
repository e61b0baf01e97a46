using Integration.Patterns.History;
using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>Headers a route adds to everything it sends after an envelope step (priority, time to live, custom headers).</summary>
public sealed class RouteEnvelope
{
    readonly List<Action<SendContext>> _apply = [];

    internal void Add(Action<SendContext> apply)
    {
        lock (_apply)
            _apply.Add(apply);
    }

    internal void ApplyTo(SendContext context)
    {
        lock (_apply)
        {
            foreach (var apply in _apply)
                apply(context);
        }
    }

    /// <summary>The envelope of the message being consumed.</summary>
    public static RouteEnvelope Of(ConsumeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetOrAddPayload(() => new RouteEnvelope());
    }
}

/// <summary>How route steps send: to a queue by name, carrying the message history and the envelope headers.</summary>
public static class RouteSender
{
    /// <summary>Sends <paramref name="message"/> to queue <paramref name="destination"/> as a child of the consumed message.</summary>
    public static async Task SendAsync<T>(ConsumeContext context, string destination, T message, Action<SendContext>? configure = null,
        CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(message);
        var history = MessageHistory.Of(context).ToJson();
        var envelope = RouteEnvelope.Of(context);
        var sequence = Splitting.MessageSequence.Of(context);
        var received = ReceivedMessage.Of(context) is { IsRaw: true } raw && raw.IsUnchanged(message) ? raw : null;
        var endpoint = await context.GetSendEndpoint(new Uri($"queue:{destination}")).ConfigureAwait(false);
        await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
        {
            // A raw message nobody changed goes on byte for byte; anything else as the endpoint serializes it.
            received?.ApplyTo(send);
            send.Headers.Set(MessageHistory.Header, history);
            sequence?.WriteTo(send.Headers);
            envelope.ApplyTo(send);
            configure?.Invoke(send);
        }), cancellationToken == default ? context.CancellationToken : cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sends through the bus rather than the consume context, for copies whose failure must not fail the consumed message
    /// (a wire tap, one recipient of several): MassTransit fails a message whose consume-context sends failed, even when
    /// the failure was handled. The conversation and initiator ids and the message format are carried over by hand, as the context would.
    /// </summary>
    public static async Task SendIsolatedAsync<T>(IServiceProvider services, ConsumeContext context, string destination, T message,
        Action<SendContext>? configure = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(message);
        var history = MessageHistory.Of(context).ToJson();
        var envelope = RouteEnvelope.Of(context);
        var sequence = Splitting.MessageSequence.Of(context);
        var received = ReceivedMessage.Of(context);
        var bus = (IBus?)services.GetService(typeof(IBus)) ?? throw new InvalidOperationException("The bus is not registered");
        var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{destination}")).ConfigureAwait(false);
        await endpoint.Send(message, Pipe.Execute<SendContext<T>>(send =>
        {
            // Keep the format a send through the context would have: the received message as it came (raw bodies byte for
            // byte), a message a step replaced serialized as the route's endpoint does (never the consumed message's
            // serializer, which writes the consumed message whatever is sent).
            if (received is not null && received.IsUnchanged(message))
            {
                if (received.IsRaw)
                    received.ApplyTo(send);
                else
                    send.Serializer = context.SerializerContext.GetMessageSerializer();
            }
            else if (received?.Serializer is { } serializer)
                send.Serializer = serializer;

            send.ConversationId = context.ConversationId;
            send.InitiatorId = context.MessageId;
            if (context.CorrelationId is { } correlation)
                send.CorrelationId = correlation;
            send.Headers.Set(MessageHistory.Header, history);
            sequence?.WriteTo(send.Headers);
            envelope.ApplyTo(send);
            configure?.Invoke(send);
        }), context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>True when <paramref name="destination"/> can name a queue.</summary>
    public static bool IsValidQueueName(string? destination) =>
        !string.IsNullOrWhiteSpace(destination) && destination.Length <= 255 && !destination.Any(c => char.IsWhiteSpace(c) || c == '/' || c == '?' || c == ':');
}
