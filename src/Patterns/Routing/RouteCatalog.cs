using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Routing;

/// <summary>Where routes are declared: one route per queue.</summary>
public interface IRouteBuilder
{
    /// <summary>
    /// A route that consumes <typeparamref name="TMessage"/> from <paramref name="queue"/> and runs the steps
    /// <paramref name="configure"/> declares, in order. <paramref name="endpoint"/> sets how the queue is read
    /// (raw JSON from non-.NET producers, retries, circuit breaker, concurrency).
    /// </summary>
    IRouteBuilder From<TMessage>(string queue, Action<IRouteConfigurator<TMessage>> configure, Action<RouteEndpointOptions>? endpoint = null)
        where TMessage : class;
}

/// <summary>Thrown at bus start when routes are misconfigured; lists every mistake, each naming the route, step and setting.</summary>
public sealed class RouteConfigurationException(IReadOnlyList<string> failures)
    : Exception("Integration routes are misconfigured:" + Environment.NewLine + string.Join(Environment.NewLine, failures.Select(f => "  - " + f)))
{
    /// <summary>Each mistake.</summary>
    public IReadOnlyList<string> Failures { get; } = failures;
}

/// <summary>Every declared route; validated and turned into receive endpoints when the bus is configured.</summary>
internal sealed class RouteCatalog : IRouteBuilder
{
    readonly List<IRouteDefinition> _routes = [];

    /// <summary>The declared routes.</summary>
    internal IReadOnlyList<IRouteDefinition> Routes => _routes;

    /// <inheritdoc />
    public IRouteBuilder From<TMessage>(string queue, Action<IRouteConfigurator<TMessage>> configure, Action<RouteEndpointOptions>? endpoint = null)
        where TMessage : class
    {
        ArgumentNullException.ThrowIfNull(configure);
        var options = new RouteEndpointOptions();
        endpoint?.Invoke(options);
        var steps = new RouteConfigurator<TMessage>(queue ?? "");
        configure(steps);
        _routes.Add(new RouteDefinition<TMessage>(queue ?? "", steps, options));
        return this;
    }

    /// <summary>Every configuration mistake of every route.</summary>
    public IReadOnlyList<string> Validate()
    {
        var failures = new List<string>();
        foreach (var route in _routes)
            failures.AddRange(route.Validate());
        foreach (var duplicate in _routes.GroupBy(r => r.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
            failures.Add($"Route '{duplicate.Key}': declared {duplicate.Count()} times; a queue has one route");
        return failures;
    }
}

interface IRouteDefinition
{
    string Name { get; }
    IEnumerable<string> Validate();
    void Configure(IReceiveConfigurator configurator, RouteControl control, IServiceProvider services);
}

sealed class RouteDefinition<TMessage>(string queue, RouteConfigurator<TMessage> steps, RouteEndpointOptions options) : IRouteDefinition
    where TMessage : class
{
    public string Name => queue;

    public IEnumerable<string> Validate()
    {
        if (!RouteSender.IsValidQueueName(queue))
        {
            yield return $"Route '{queue}': the queue name must be non-empty, at most 255 characters, without white space, '/', '?' or ':'";
            yield break;
        }

        if (steps.Count == 0)
            yield return $"Route '{queue}': it has no steps; a route needs at least a destination (To, Route or RecipientList)";
        else if (!steps.EndsTerminal)
            yield return $"Route '{queue}': the last step does not send the message anywhere, so it would be acknowledged and lost; end it with To, Route or RecipientList";

        foreach (var failure in steps.Validate(queue, 0))
            yield return failure;
        foreach (var failure in options.Validate())
            yield return $"Route '{queue}', endpoint: {failure}";
    }

    public void Configure(IReceiveConfigurator configurator, RouteControl control, IServiceProvider services)
    {
        var pipe = steps.Build(control, services, 0);
        control.AddRoute(new RouteDescription(queue, typeof(TMessage).Name, steps.Describe(0).ToList()));
        var addressing = services.GetService(typeof(IQueueAddressing)) as IQueueAddressing;
        var rateLimit = options.RateLimitSetting is { } rate ? control.AddRateLimit(queue, rate.Messages, rate.Interval) : null;
        configurator.ReceiveEndpoint(queue, endpoint =>
        {
            if (rateLimit is not null)
                endpoint.UseFilter(new Throttling.RateLimitFilter(rateLimit));   // outermost: a retry does not wait for a new slot
            var compression = options.Compression?.Snapshot();
            options.Apply(endpoint, compression);
            var maxBody = options.MaxBodyBytes;
            var serializer = options.SendSerializer(compression);
            var budget = options.Deadline;
            var time = services.GetService(typeof(TimeProvider)) as TimeProvider ?? TimeProvider.System;
            endpoint.Handler<TMessage>(async context =>
            {
                // Raw: read from a plain body (raw JSON, XML, a raw document), not from a MassTransit envelope a .NET
                // producer sent to the same queue; only such a body is passed on as it came.
                if (addressing is not null)
                    context.GetOrAddPayload(() => addressing);
                ReceivedMessage.Remember(context, context.Message, context.SerializerContext is SystemTextJsonRawSerializerContext, serializer, compression);
                if (maxBody is { } max && context.ReceiveContext.Body.Length is { } length && length > max)
                {
                    throw new Filtering.MessageRejectedException(
                        $"Route '{queue}' rejected the message: its body is {length} bytes, over the limit of {max} (MaxBodyBytes)");
                }

                // A message whose deadline has passed is not started: to <queue>_skipped with the reason (a request's caller gets a fault).
                if (await Deadlines.DeadlineGuard.SkipIfPassed(context, budget, time).ConfigureAwait(false))
                    return;
                await pipe.Send(context).ConfigureAwait(false);
            });
        });
    }
}
