using Integration.Patterns.History;
using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.DynamicRouting;

/// <summary>Thrown when a message has been routed <c>maxHops</c> times; it goes to the error queue with this reason (a loop guard).</summary>
public sealed class DynamicRoutingException(string message) : Exception(message);

/// <summary>
/// Dynamic router (EIP; Camel <c>dynamicRouter</c>): the next destination is computed each time the message comes back,
/// from the message and the destinations it has already visited, until the function says it is done.
/// </summary>
public static class DynamicRouterExtensions
{
    /// <summary>
    /// Sends each message to the queue <paramref name="next"/> computes from the message and the destinations this router
    /// already sent it to (oldest first, read from its message history, so they survive the trip through other routes and
    /// services); the steps there send it back to this route's queue, and the router decides again. When
    /// <paramref name="next"/> returns null the message goes to <paramref name="completed"/>. A message routed
    /// <paramref name="maxHops"/> times fails with <see cref="DynamicRoutingException"/> and goes to the error queue with
    /// its path in the reason: a loop never runs forever. The route ends here.
    /// </summary>
    public static IRouteConfigurator<T> DynamicRoute<T>(this IRouteConfigurator<T> route, Func<T, IReadOnlyList<string>, string?> next, string completed,
        int maxHops = 10, string name = "dynamic")
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new DynamicRouterSpecification<T>(next, completed, maxHops, name));
    }
}

/// <summary>Specification of a dynamic router.</summary>
internal sealed class DynamicRouterSpecification<T>(Func<T, IReadOnlyList<string>, string?>? next, string completed, int maxHops, string name)
    : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "DynamicRoute";

    /// <inheritdoc />
    public string Name => $"dynamic:{name}";

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (next is null)
            yield return "the next-destination function is missing";
        if (!RouteSender.IsValidQueueName(completed))
            yield return $"completed queue '{completed}' is not a valid queue name";
        if (maxHops is < 1 or > 100)
            yield return $"maxHops must be 1 to 100, not {maxHops}";
        if (string.IsNullOrWhiteSpace(name) || name.Contains("->", StringComparison.Ordinal))
            yield return $"name '{name}' must be non-empty and contain no '->'";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new DynamicRouterFilter<T>(context.Route, Name, next!, completed, maxHops, context.Metrics);
    }
}

/// <summary>Decides, records the hop in the message history (<c>dynamic:{name}-&gt;{queue}</c>) and sends.</summary>
internal sealed class DynamicRouterFilter<T>(string route, string name, Func<T, IReadOnlyList<string>, string?> next, string completed, int maxHops,
    PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> pipe)
    {
        ArgumentNullException.ThrowIfNull(context);
        var history = MessageHistory.Of(context);
        var prefix = name + "->";
        var visited = history.Entries.Where(e => e.Step.StartsWith(prefix, StringComparison.Ordinal)).Select(e => e.Step[prefix.Length..]).ToList();
        var destination = next(context.Message, visited);
        if (destination is null)
        {
            await RouteSender.SendAsync(context, completed, context.Message).ConfigureAwait(false);
            metrics.Forwarded(route, completed);
            return;
        }

        if (!RouteSender.IsValidQueueName(destination))
            throw new DynamicRoutingException($"Route '{route}', {name}: the computed destination '{destination}' is not a valid queue name");
        if (visited.Count >= maxHops)
        {
            throw new DynamicRoutingException(
                $"Route '{route}', {name}: the message was routed {visited.Count} times (max hops {maxHops}), probably a loop; path: {string.Join(" > ", visited)}; next would be {destination}");
        }

        history.Append(prefix + destination);
        await RouteSender.SendAsync(context, destination, context.Message).ConfigureAwait(false);
        metrics.Forwarded(route, destination);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("dynamicRouter");
        scope.Add("completed", completed);
        scope.Add("maxHops", maxHops);
    }
}
