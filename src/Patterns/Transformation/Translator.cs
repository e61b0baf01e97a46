using Integration.Patterns.Routing;
using MassTransit;
using MassTransit.Context;

namespace Integration.Patterns.Transformation;

/// <summary>Message translator (EIP; Camel <c>transform</c>): a typed conversion; the route's next steps work on the result.</summary>
public static class TranslatorExtensions
{
    /// <summary>
    /// Turns each message into a <typeparamref name="TOut"/>; returns the configurator for the steps that follow on
    /// the new type. An exception in <paramref name="translate"/> fails the message (to the error queue with the reason).
    /// </summary>
    public static IRouteConfigurator<TOut> Translate<TIn, TOut>(this IRouteConfigurator<TIn> route, Func<TIn, TOut> translate, string? name = null)
        where TIn : class
        where TOut : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.ContinueWith(new TranslatorSpecification<TIn, TOut>(translate, name ?? $"translate:{typeof(TOut).Name}"));
    }
}

/// <summary>Specification of a translation.</summary>
internal sealed class TranslatorSpecification<TIn, TOut>(Func<TIn, TOut>? translate, string name) : IRouteBridgeSpecification<TIn, TOut>
    where TIn : class
    where TOut : class
{
    /// <inheritdoc />
    public string Kind => "Translate";

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (translate is null)
            yield return "the translation function is missing";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<TIn>> Build(RouteStepContext context, IPipe<ConsumeContext<TOut>> next) =>
        new TranslatorFilter<TIn, TOut>(translate!, next);
}

/// <summary>Converts and continues with a consume context of the new type (same headers, ids and payloads).</summary>
internal sealed class TranslatorFilter<TIn, TOut>(Func<TIn, TOut> translate, IPipe<ConsumeContext<TOut>> downstream) : IFilter<ConsumeContext<TIn>>
    where TIn : class
    where TOut : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<TIn> context, IPipe<ConsumeContext<TIn>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var translated = translate(context.Message)
            ?? throw new InvalidOperationException($"The translation to {typeof(TOut).Name} returned null");
        await downstream.Send(new MessageConsumeContext<TOut>(context, translated)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("translate");
        scope.Add("from", typeof(TIn).Name);
        scope.Add("to", typeof(TOut).Name);
        downstream.Probe(scope);
    }
}
