using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.WireTap;

/// <summary>Wire tap (EIP; Camel <c>wireTap</c>): a copy of every message to another queue, without touching the main flow.</summary>
public static class WireTapExtensions
{
    /// <summary>
    /// Sends a copy of each message to <paramref name="destination"/>, with the message history up to the tap. The copy is
    /// sent while the message goes on; a
    /// failing or slow tap never fails or holds up the message (failures are logged and counted, and the wait for the
    /// copy is bounded by <paramref name="timeout"/>, default 5 s). Switchable at run time under
    /// <c>wiretap:{destination}</c> through <see cref="RouteControl"/>.
    /// </summary>
    public static IRouteConfigurator<T> WireTap<T>(this IRouteConfigurator<T> route, string destination, bool enabled = true, TimeSpan? timeout = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new WireTapSpecification<T>(destination, enabled, timeout ?? TimeSpan.FromSeconds(5)));
    }
}

/// <summary>Specification of a wire tap.</summary>
internal sealed class WireTapSpecification<T>(string destination, bool enabled, TimeSpan timeout) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "WireTap";

    /// <inheritdoc />
    public string Name => $"wiretap:{destination}";

    /// <inheritdoc />
    public bool IsTerminal => false;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (!RouteSender.IsValidQueueName(destination))
            yield return $"destination '{destination}' is not a valid queue name";
        if (timeout <= TimeSpan.Zero)
            yield return $"timeout must be positive, not {timeout}";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new WireTapFilter<T>(context.Route, destination, timeout, context.Control.AddSwitch(context.Route, Name, Kind, enabled), context.Services, context.Metrics);
    }
}

/// <summary>Sends the copy concurrently with the rest of the route; waits for it at most <c>timeout</c> afterwards, swallowing its failure.</summary>
internal sealed partial class WireTapFilter<T>(string route, string destination, TimeSpan timeout, RouteSwitch enabled, IServiceProvider services,
    PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        if (!enabled.Enabled)
        {
            await next.Send(context).ConfigureAwait(false);
            return;
        }

        // The copy carries the history and envelope as they are at the tap, not what the steps after it add while it is sent.
        var tap = Tap(context, RouteSendState.Capture(context));
        await next.Send(context).ConfigureAwait(false);
        // Usually confirmed by now. Otherwise a bounded wait whose timer goes with it (a Task.Delay per message would leave
        // one live timer per message for the whole timeout). The tap never throws: its failure was counted and logged.
        if (!tap.IsCompleted)
        {
            try
            {
                await tap.WaitAsync(timeout).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }
    }

    async Task Tap(ConsumeContext<T> context, RouteSendState state)
    {
        try
        {
            // Runs inline up to the send's first wait (serializing the copy), then alongside the rest of the route.
            await RouteSender.SendIsolatedAsync(services, context, destination, context.Message, state).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            metrics.TapFailed(route, destination);
            var logger = services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.WireTap") ?? NullLogger.Instance;
            LogTapFailed(logger, exception, route, destination);
        }
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("wireTap");
        scope.Add("destination", destination);
        scope.Add("enabled", enabled.Enabled);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Route {Route}: wire tap copy to {Destination} failed; the message went on")]
    static partial void LogTapFailed(ILogger logger, Exception exception, string route, string destination);
}
