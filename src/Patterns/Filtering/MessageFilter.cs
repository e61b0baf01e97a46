using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.Filtering;

/// <summary>What a message filter does with a message it does not accept. There is no silent drop.</summary>
public abstract class Rejection
{
    Rejection()
    {
    }

    /// <summary>Send rejected messages to a discard queue.</summary>
    public static Rejection SendTo(string queue) => new ToQueue(queue);

    /// <summary>Drop rejected messages, counting them (<c>integration.route.discarded</c>) and logging each at Information.</summary>
    public static Rejection CountAndLog { get; } = new Counted();

    internal sealed class ToQueue(string queue) : Rejection
    {
        public string Queue { get; } = queue;
    }

    internal sealed class Counted : Rejection;
}

/// <summary>Message filter (EIP; Camel <c>filter</c>) and validation.</summary>
public static class MessageFilterExtensions
{
    /// <summary>Lets through messages <paramref name="accept"/> returns true for; the others go to queue <paramref name="otherwise"/>.</summary>
    public static IRouteConfigurator<T> Filter<T>(this IRouteConfigurator<T> route, Func<T, bool> accept, string otherwise)
        where T : class =>
        route.Filter(accept, Rejection.SendTo(otherwise));

    /// <summary>Lets through messages <paramref name="accept"/> returns true for; the others get <paramref name="rejection"/>.</summary>
    public static IRouteConfigurator<T> Filter<T>(this IRouteConfigurator<T> route, Func<T, bool> accept, Rejection rejection)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new MessageFilterSpecification<T>(accept, rejection));
    }

    /// <summary>
    /// Fails messages <paramref name="valid"/> returns false for: they go to the route's error queue with
    /// <paramref name="reason"/> in <c>MT-Fault-Message</c>, are not retried, and the route goes on with the next message.
    /// </summary>
    public static IRouteConfigurator<T> Validate<T>(this IRouteConfigurator<T> route, Func<T, bool> valid, string reason)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new ValidationSpecification<T>(valid, reason));
    }
}

/// <summary>Specification of a message filter.</summary>
internal sealed class MessageFilterSpecification<T>(Func<T, bool>? accept, Rejection? rejection) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "Filter";

    /// <inheritdoc />
    public string Name => rejection is Rejection.ToQueue q ? $"filter:{q.Queue}" : "filter";

    /// <inheritdoc />
    public bool IsTerminal => false;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (accept is null)
            yield return "the accept predicate is missing";
        if (rejection is null)
            yield return "what happens to rejected messages is missing: give a discard queue or Rejection.CountAndLog";
        else if (rejection is Rejection.ToQueue q && !RouteSender.IsValidQueueName(q.Queue))
            yield return $"discard queue '{q.Queue}' is not a valid queue name";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context) => new MessageFilter<T>(context.Route, accept!, (rejection as Rejection.ToQueue)?.Queue, context.Metrics);
}

/// <summary>Runs the predicate; a rejected message goes to the discard queue or is counted and logged.</summary>
internal sealed partial class MessageFilter<T>(string route, Func<T, bool> accept, string? discardQueue, PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        if (accept(context.Message))
        {
            await next.Send(context).ConfigureAwait(false);
            return;
        }

        if (discardQueue is not null)
        {
            await RouteSender.SendAsync(context, discardQueue, context.Message).ConfigureAwait(false);
            metrics.Forwarded(route, discardQueue);
            return;
        }

        metrics.Discarded(route);
        var logger = context.TryGetPayload(out IServiceProvider? services)
            ? services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.Filter") ?? NullLogger.Instance
            : NullLogger.Instance;
        LogDiscarded(logger, route, context.MessageId);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("messageFilter");
        scope.Add("rejected", discardQueue ?? "counted and logged");
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Route {Route}: message {MessageId} rejected by the filter and discarded (counted)")]
    static partial void LogDiscarded(ILogger logger, string route, Guid? messageId);
}

/// <summary>Thrown by a validation step; MassTransit moves the message to the error queue with this message as the reason.</summary>
public sealed class MessageRejectedException(string message) : Exception(message);

/// <summary>Specification of a validation step.</summary>
internal sealed class ValidationSpecification<T>(Func<T, bool>? valid, string? reason) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "Validate";

    /// <inheritdoc />
    public string Name => "validate";

    /// <inheritdoc />
    public bool IsTerminal => false;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (valid is null)
            yield return "the validity predicate is missing";
        if (string.IsNullOrWhiteSpace(reason))
            yield return "the reason is missing; it is what operators read in the error queue";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context) => new ValidationFilter<T>(context.Route, valid!, reason!);
}

/// <summary>Throws <see cref="MessageRejectedException"/> for invalid messages.</summary>
internal sealed class ValidationFilter<T>(string route, Func<T, bool> valid, string reason) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        bool ok;
        try
        {
            ok = valid(context.Message);
        }
        catch (Exception exception) when (exception is NullReferenceException or ArgumentException or InvalidOperationException)
        {
            ok = false;
        }

        return ok ? next.Send(context) : throw new MessageRejectedException($"Route '{route}' rejected the message: {reason}");
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context) => context.CreateFilterScope("validate").Add("reason", reason);
}
