using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>
/// The steps of a route for messages of type <typeparamref name="TMessage"/>, in the order they are called: every
/// pattern is an extension method on it (<c>To</c>, <c>Route</c>, <c>Filter</c>, <c>WireTap</c>, <c>Translate</c>…), and
/// a step that changes the message type (a translator, a splitter, a normalizer) returns the configurator of the new
/// type. Nothing needs an <c>End()</c>. Implemented by the library only.
/// </summary>
public interface IRouteConfigurator<TMessage>
    where TMessage : class
{
    /// <summary>The route's name (its queue), for messages.</summary>
    string Route { get; }

    /// <summary>Appends a step.</summary>
    internal IRouteConfigurator<TMessage> AddStep(IRouteStepSpecification<TMessage> step);

    /// <summary>
    /// Ends this message type's steps with <paramref name="bridge"/>, which turns each message into a
    /// <typeparamref name="TNext"/> and hands it to the steps configured on the returned configurator.
    /// </summary>
    internal IRouteConfigurator<TNext> ContinueWith<TNext>(IRouteBridgeSpecification<TMessage, TNext> bridge)
        where TNext : class;
}

/// <summary>A step that carries the message over to another type (a translator, a normalizer).</summary>
internal interface IRouteBridgeSpecification<TMessage, TNext>
    where TMessage : class
    where TNext : class
{
    /// <summary>The pattern, e.g. <c>Translate</c>.</summary>
    string Kind { get; }

    /// <summary>Name in the message history.</summary>
    string Name { get; }

    /// <summary>Configuration mistakes.</summary>
    IEnumerable<string> Validate();

    /// <summary>Builds the filter that converts and sends into <paramref name="next"/>.</summary>
    IFilter<ConsumeContext<TMessage>> Build(RouteStepContext context, IPipe<ConsumeContext<TNext>> next);
}

/// <summary>Builds one segment of a route (the steps of one message type) and whatever follows it.</summary>
internal interface IRouteSegment
{
    int Count { get; }
    bool EndsTerminal { get; }
    IEnumerable<string> Validate(string route, int offset);
    IEnumerable<RouteStepDescription> Describe(int offset);
}

sealed class RouteConfigurator<TMessage>(string route) : IRouteConfigurator<TMessage>, IRouteSegment
    where TMessage : class
{
    readonly List<IRouteStepSpecification<TMessage>> _steps = [];
    IContinuation? _continuation;

    public string Route { get; } = route;

    public IRouteConfigurator<TMessage> AddStep(IRouteStepSpecification<TMessage> step)
    {
        ArgumentNullException.ThrowIfNull(step);
        if (_continuation is not null)
            throw new InvalidOperationException($"Route '{Route}': no step can follow '{_continuation.Kind}' on {typeof(TMessage).Name}; add it to the configurator the translation returned");
        _steps.Add(step);
        return this;
    }

    public IRouteConfigurator<TNext> ContinueWith<TNext>(IRouteBridgeSpecification<TMessage, TNext> bridge)
        where TNext : class
    {
        ArgumentNullException.ThrowIfNull(bridge);
        if (_continuation is not null)
            throw new InvalidOperationException($"Route '{Route}': {typeof(TMessage).Name} already continues through '{_continuation.Kind}'");
        var next = new RouteConfigurator<TNext>(Route);
        _continuation = new Continuation<TNext>(bridge, next);
        return next;
    }

    public int Count => _steps.Count + (_continuation is null ? 0 : 1 + _continuation.Segment.Count);

    public bool EndsTerminal => _continuation?.Segment.EndsTerminal ?? (_steps.Count > 0 && _steps[^1].IsTerminal);

    public IEnumerable<string> Validate(string route, int offset)
    {
        for (var i = 0; i < _steps.Count; i++)
        {
            var step = _steps[i];
            var where = $"Route '{route}', step {offset + i + 1} ({step.Kind})";
            foreach (var failure in step.Validate())
                yield return $"{where}: {failure}";
            if (step.IsTerminal && (i < _steps.Count - 1 || _continuation is not null))
                yield return $"{where}: the message ends here, so the steps after it would never run; move them before it";
        }

        if (_continuation is not null)
        {
            var index = offset + _steps.Count + 1;
            foreach (var failure in _continuation.Validate())
                yield return $"Route '{route}', step {index} ({_continuation.Kind}): {failure}";
            foreach (var failure in _continuation.Segment.Validate(route, index))
                yield return failure;
        }
    }

    public IEnumerable<RouteStepDescription> Describe(int offset)
    {
        for (var i = 0; i < _steps.Count; i++)
            yield return new RouteStepDescription(offset + i + 1, _steps[i].Kind, _steps[i].Name, typeof(TMessage).Name);
        if (_continuation is not null)
        {
            var index = offset + _steps.Count + 1;
            yield return new RouteStepDescription(index, _continuation.Kind, _continuation.Name, typeof(TMessage).Name);
            foreach (var step in _continuation.Segment.Describe(index))
                yield return step;
        }
    }

    /// <summary>Builds the pipe for this segment; steps are numbered from <paramref name="offset"/> + 1.</summary>
    public IPipe<ConsumeContext<TMessage>> Build(RouteControl control, IServiceProvider services, int offset)
    {
        var filters = new List<IFilter<ConsumeContext<TMessage>>>();
        for (var i = 0; i < _steps.Count; i++)
        {
            var context = new RouteStepContext(Route, offset + i + 1, control, services);
            var step = _steps[i];
            filters.Add(new RouteStepFilter<TMessage>(context, step.Kind, step.Name, step.Build(context)));
        }

        if (_continuation is not null)
            filters.Add(_continuation.Build(Route, control, services, offset + _steps.Count + 1));

        return Pipe.New<ConsumeContext<TMessage>>(cfg =>
        {
            foreach (var filter in filters)
                cfg.UseFilter(filter);
        });
    }

    interface IContinuation
    {
        string Kind { get; }
        string Name { get; }
        IRouteSegment Segment { get; }
        IEnumerable<string> Validate();
        IFilter<ConsumeContext<TMessage>> Build(string route, RouteControl control, IServiceProvider services, int index);
    }

    sealed class Continuation<TNext>(IRouteBridgeSpecification<TMessage, TNext> bridge, RouteConfigurator<TNext> next) : IContinuation
        where TNext : class
    {
        public string Kind => bridge.Kind;
        public string Name => bridge.Name;
        public IRouteSegment Segment => next;
        public IEnumerable<string> Validate() => bridge.Validate();

        public IFilter<ConsumeContext<TMessage>> Build(string route, RouteControl control, IServiceProvider services, int index)
        {
            var context = new RouteStepContext(route, index, control, services);
            return new RouteStepFilter<TMessage>(context, bridge.Kind, bridge.Name, bridge.Build(context, next.Build(control, services, index)));
        }
    }
}
