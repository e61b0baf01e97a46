using System.Diagnostics;
using Integration.Patterns.History;
using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>
/// The definition of one step of a route for messages of type <typeparamref name="TMessage"/>: validated when the bus
/// starts, then built once into an immutable filter. Patterns add steps to a route through
/// <see cref="IRouteConfigurator{TMessage}.AddStep"/>, usually from an extension method in their own folder.
/// </summary>
internal interface IRouteStepSpecification<TMessage>
    where TMessage : class
{
    /// <summary>The pattern, e.g. <c>WireTap</c>; shown in validation errors, history and probes.</summary>
    string Kind { get; }

    /// <summary>What this step is called in the message history, e.g. <c>wiretap:audit</c>.</summary>
    string Name { get; }

    /// <summary>True when the message does not continue past this step (it was sent on, or it ended).</summary>
    bool IsTerminal { get; }

    /// <summary>Configuration mistakes, each a sentence naming the setting; the route prefixes its name and the step.</summary>
    IEnumerable<string> Validate();

    /// <summary>Builds the runtime filter. Called once, after <see cref="Validate"/> found nothing.</summary>
    IFilter<ConsumeContext<TMessage>> Build(RouteStepContext context);
}

/// <summary>What a step knows about where it stands when it is built.</summary>
/// <param name="Route">The route's name (its queue).</param>
/// <param name="Index">1-based position in the route.</param>
/// <param name="Control">Runtime switches and routing tables, shared with the control bus.</param>
/// <param name="Services">The bus's services, for steps that send outside the consumed message (see <see cref="RouteSender.SendIsolatedAsync{T}"/>).</param>
internal sealed record RouteStepContext(string Route, int Index, RouteControl Control, IServiceProvider Services)
{
    /// <summary>The route's error queue, where per-step failures that must not fail the message are parked.</summary>
    public string ErrorQueue => Route + "_error";

    /// <summary>The <c>Integration.Patterns</c> instruments of this service provider.</summary>
    internal PatternMetrics Metrics => (PatternMetrics?)Services.GetService(typeof(PatternMetrics))
                                       ?? throw new InvalidOperationException("The pattern metrics are not registered; declare routes with AddIntegrationRoutes");
}

/// <summary>Wraps every step: appends to the message history, opens a trace span, and probes as the step.</summary>
sealed class RouteStepFilter<TMessage>(RouteStepContext step, string kind, string name, IFilter<ConsumeContext<TMessage>> inner)
    : IFilter<ConsumeContext<TMessage>>
    where TMessage : class
{
    readonly string _spanName = $"{step.Route} {kind}";

    public async Task Send(ConsumeContext<TMessage> context, IPipe<ConsumeContext<TMessage>> next)
    {
        MessageHistory.Of(context).Append(name);
        using var activity = PatternDiagnostics.Source.HasListeners() ? PatternDiagnostics.Source.StartActivity(_spanName, ActivityKind.Internal) : null;
        activity?.SetTag("integration.route", step.Route);
        activity?.SetTag("integration.step", name);
        activity?.SetTag("integration.step.index", step.Index);
        await inner.Send(context, next).ConfigureAwait(false);
    }

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateScope("step");
        scope.Add("index", step.Index);
        scope.Add("kind", kind);
        scope.Add("name", name);
        inner.Probe(scope);
    }
}
