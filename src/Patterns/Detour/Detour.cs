using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.Detour;

/// <summary>Detour (EIP): extra steps a message goes through only while an operator has switched them on.</summary>
public static class DetourExtensions
{
    /// <summary>
    /// While the switch <c>detour:{name}</c> is on (see <see cref="RouteControl.SetSwitch"/>), each message first runs
    /// <paramref name="steps"/> (e.g. a wire tap to an inspection queue, a validation), then goes on with the route.
    /// The detour's steps must let the message continue: a step that ends the message is refused at start.
    /// </summary>
    public static IRouteConfigurator<T> Detour<T>(this IRouteConfigurator<T> route, string name, Action<IRouteConfigurator<T>> steps, bool enabled = false)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(steps);
        var detour = new DetourSteps<T>(route.Route);
        steps(detour);
        return route.AddStep(new DetourSpecification<T>(name, detour.Steps, enabled));
    }

    sealed class DetourSteps<T>(string route) : IRouteConfigurator<T>
        where T : class
    {
        public List<IRouteStepSpecification<T>> Steps { get; } = [];
        public string Route { get; } = route;

        public IRouteConfigurator<T> AddStep(IRouteStepSpecification<T> step)
        {
            Steps.Add(step);
            return this;
        }

        public IRouteConfigurator<TNext> ContinueWith<TNext>(IRouteBridgeSpecification<T, TNext> bridge)
            where TNext : class =>
            throw new InvalidOperationException($"Route '{Route}': a detour cannot change the message type ({bridge.Kind}); translate in the main route");
    }
}

/// <summary>Specification of a detour.</summary>
internal sealed class DetourSpecification<T>(string name, IReadOnlyList<IRouteStepSpecification<T>> steps, bool enabled) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "Detour";

    /// <inheritdoc />
    public string Name => $"detour:{name}";

    /// <inheritdoc />
    public bool IsTerminal => false;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (string.IsNullOrWhiteSpace(name))
            yield return "the detour needs a name (the control bus switches it by name)";
        if (steps.Count == 0)
            yield return $"detour '{name}' has no steps";
        for (var i = 0; i < steps.Count; i++)
        {
            foreach (var failure in steps[i].Validate())
                yield return $"detour '{name}' step {i + 1} ({steps[i].Kind}): {failure}";
            if (steps[i].IsTerminal)
                yield return $"detour '{name}' step {i + 1} ({steps[i].Kind}) ends the message, so it would never return to the route";
        }
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var filters = steps.Select(s => (IFilter<ConsumeContext<T>>)new DetourStepFilter<T>(s.Name, s.Build(context))).ToList();
        return new DetourFilter<T>(context.Control.AddSwitch(context.Route, Name, Kind, enabled), filters);
    }
}

sealed class DetourStepFilter<T>(string name, IFilter<ConsumeContext<T>> inner) : IFilter<ConsumeContext<T>>
    where T : class
{
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        History.MessageHistory.Of(context).Append(name);
        return inner.Send(context, next);
    }

    public void Probe(ProbeContext context) => inner.Probe(context.CreateScope(name));
}

/// <summary>
/// While switched on, runs the detour's filters ahead of the route's next step: each calls the next, the last one calls
/// the route, so the message continues exactly when every detour step lets it through.
/// </summary>
internal sealed class DetourFilter<T>(RouteSwitch enabled, IReadOnlyList<IFilter<ConsumeContext<T>>> detour) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(next);
        if (!enabled.Enabled)
            return next.Send(context);

        var pipe = next;
        for (var i = detour.Count - 1; i >= 0; i--)
            pipe = new ChainPipe(detour[i], pipe);
        return pipe.Send(context);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("detour");
        scope.Add("name", enabled.Name);
        scope.Add("enabled", enabled.Enabled);
        foreach (var filter in detour)
            filter.Probe(scope);
    }

    sealed class ChainPipe(IFilter<ConsumeContext<T>> filter, IPipe<ConsumeContext<T>> next) : IPipe<ConsumeContext<T>>
    {
        public Task Send(ConsumeContext<T> context) => filter.Send(context, next);

        public void Probe(ProbeContext context) => filter.Probe(context);
    }
}
