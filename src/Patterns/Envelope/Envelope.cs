using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.Envelope;

/// <summary>What an envelope step puts on every message the route sends after it.</summary>
public interface IEnvelopeConfigurator<T>
    where T : class
{
    /// <summary>A header computed from the message.</summary>
    IEnvelopeConfigurator<T> Header(string name, Func<T, string?> value);

    /// <summary>The correlation id of the messages sent on (EIP "Correlation Identifier").</summary>
    IEnvelopeConfigurator<T> CorrelateBy(Func<T, Guid> correlationId);

    /// <summary>Time to live: the broker drops (or dead-letters, per queue policy) what is not consumed in time.</summary>
    IEnvelopeConfigurator<T> TimeToLive(TimeSpan timeToLive);

    /// <summary>Broker priority 0–9 (the destination queue needs <c>x-max-priority</c> to honour it).</summary>
    IEnvelopeConfigurator<T> Priority(Func<T, byte> priority);
}

/// <summary>
/// Envelope wrapper (EIP): routing metadata, correlation and QoS carried as transport headers on everything the route
/// sends after this step, so they are visible to any consumer and in traces. Causation and parent ids need no step:
/// every message a route sends is sent from the consumed one, so MassTransit sets its conversation and initiator ids.
/// </summary>
public static class EnvelopeExtensions
{
    /// <summary>Adds the headers <paramref name="envelope"/> declares to every message sent after this step.</summary>
    public static IRouteConfigurator<T> Envelope<T>(this IRouteConfigurator<T> route, Action<IEnvelopeConfigurator<T>> envelope)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(envelope);
        var configurator = new EnvelopeConfigurator<T>();
        envelope(configurator);
        return route.AddStep(configurator);
    }

    sealed class EnvelopeConfigurator<T> : IEnvelopeConfigurator<T>, IRouteStepSpecification<T>
        where T : class
    {
        readonly List<Func<T, Action<SendContext>>> _parts = [];
        readonly List<string> _failures = [];

        public string Kind => "Envelope";
        public string Name => "envelope";
        public bool IsTerminal => false;

        public IEnvelopeConfigurator<T> Header(string name, Func<T, string?> value)
        {
            if (string.IsNullOrWhiteSpace(name) || value is null)
                _failures.Add("Header needs a name and a value function");
            else
                _parts.Add(m => { var v = value(m); return send => send.Headers.Set(name, v); });
            return this;
        }

        public IEnvelopeConfigurator<T> CorrelateBy(Func<T, Guid> correlationId)
        {
            _parts.Add(m => { var id = correlationId(m); return send => send.CorrelationId = id; });
            return this;
        }

        public IEnvelopeConfigurator<T> TimeToLive(TimeSpan timeToLive)
        {
            if (timeToLive <= TimeSpan.Zero)
                _failures.Add($"TimeToLive must be positive, not {timeToLive}");
            _parts.Add(_ => send => send.TimeToLive = timeToLive);
            return this;
        }

        public IEnvelopeConfigurator<T> Priority(Func<T, byte> priority)
        {
            _parts.Add(m =>
            {
                var p = Math.Min((byte)9, priority(m));
                return send => send.Headers.Set("Integration-Priority", p.ToString(System.Globalization.CultureInfo.InvariantCulture));
            });
            return this;
        }

        public IEnumerable<string> Validate() => _parts.Count == 0 && _failures.Count == 0 ? ["the envelope sets nothing"] : _failures;

        public IFilter<ConsumeContext<T>> Build(RouteStepContext context) => new EnvelopeFilter<T>(_parts.ToList());
    }
}

/// <summary>Records the envelope's headers for every later send of the consumed message.</summary>
internal sealed class EnvelopeFilter<T>(IReadOnlyList<Func<T, Action<SendContext>>> parts) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var envelope = RouteEnvelope.Of(context);
        foreach (var part in parts)
            envelope.Add(part(context.Message));
        return next.Send(context);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context) => context.CreateFilterScope("envelope").Add("parts", parts.Count);
}
