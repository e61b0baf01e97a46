using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.Endpoints;

/// <summary>The plainest destination: send the message to one queue (EIP "Message Endpoint"; Camel <c>to</c>).</summary>
public static class SendToExtensions
{
    /// <summary>Sends the message to <paramref name="destination"/>; the route ends here.</summary>
    public static IRouteConfigurator<T> To<T>(this IRouteConfigurator<T> route, string destination)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new SendToSpecification<T>(destination));
    }
}

/// <summary>Specification of <see cref="SendToExtensions.To{T}"/>.</summary>
internal sealed class SendToSpecification<T>(string destination) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "To";

    /// <inheritdoc />
    public string Name => $"to:{destination}";

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (!RouteSender.IsValidQueueName(destination))
            yield return $"destination '{destination}' is not a valid queue name";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context) => new SendToFilter<T>(context.Route, destination, context.Metrics);
}

/// <summary>Sends to one queue.</summary>
internal sealed class SendToFilter<T>(string route, string destination, PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        await RouteSender.SendAsync(context, destination, context.Message).ConfigureAwait(false);
        metrics.Forwarded(route, destination);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context) => context.CreateFilterScope("to").Add("destination", destination);
}
