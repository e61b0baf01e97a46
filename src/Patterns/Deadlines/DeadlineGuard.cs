using System.Diagnostics;
using MassTransit;
using MassTransit.Configuration;

namespace Integration.Patterns.Deadlines;

/// <summary>
/// Deadlines for typed consumers and request clients. Routes honour deadlines without a call (and set a budget with
/// <c>RouteEndpointOptions.Deadline</c>); the content enricher and the smart proxy derive their timeouts from them.
/// </summary>
public static class DeadlineExtensions
{
    /// <summary>
    /// Every consumer and handler on this endpoint (or bus) checks the deadline of a message before it starts: one whose deadline has
    /// passed is not consumed but moved to <c>&lt;queue&gt;_skipped</c> with the reason in <see cref="MessageDeadline.SkippedReasonHeader"/>,
    /// and a request's caller gets a fault (<see cref="DeadlineExceededException"/>) rather than silence. What consumers
    /// send carries the same deadline on. Call it before the consumers and handlers are configured.
    /// </summary>
    public static void UseMessageDeadlines(this IConsumePipeConfigurator configurator, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        if (configurator is not (IConsumerConfigurationObserverConnector consumers and IHandlerConfigurationObserverConnector handlers))
            throw new ArgumentException("UseMessageDeadlines needs a bus or receive endpoint configurator", nameof(configurator));
        var observer = new DeadlineObserver(time ?? TimeProvider.System);
        consumers.ConnectConsumerConfigurationObserver(observer);
        handlers.ConnectHandlerConfigurationObserver(observer);
    }

    /// <summary>
    /// Sends <paramref name="request"/> to <paramref name="destination"/> and waits for its response under the deadline
    /// of <paramref name="context"/>'s message (none: <paramref name="budget"/> from now): the timeout is what is left,
    /// capped by <paramref name="budget"/>, and the request carries that hop's deadline on.
    /// </summary>
    /// <exception cref="DeadlineExceededException">The deadline has passed; nothing was sent.</exception>
    /// <exception cref="RequestTimeoutException">No response within the hop's timeout.</exception>
    /// <exception cref="RequestFaultException">The service faulted (or skipped the request because its deadline passed).</exception>
    public static async Task<Response<TResponse>> GetResponseWithin<TRequest, TResponse>(this IClientFactory factory, Uri destination, TRequest request,
        TimeSpan budget, ConsumeContext? context = null, TimeProvider? time = null, CancellationToken cancellationToken = default)
        where TRequest : class
        where TResponse : class
    {
        ArgumentNullException.ThrowIfNull(factory);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(request);
        time ??= TimeProvider.System;
        var deadline = (context is null ? null : MessageDeadline.Of(context)) ?? MessageDeadline.After(budget, time);
        var timeout = MessageDeadline.HopTimeout(deadline, budget, time);
        var hop = deadline.Hop(timeout, time);
        var client = context is null
            ? factory.CreateRequestClient<TRequest>(destination, RequestTimeout.After(ms: Milliseconds(timeout)))
            : factory.CreateRequestClient<TRequest>(context, destination, RequestTimeout.After(ms: Milliseconds(timeout)));
        using var handle = client.Create(request, cancellationToken);
        handle.UseExecute(send => hop.WriteTo(send));
        return await handle.GetResponse<TResponse>().ConfigureAwait(false);
    }

    internal static int Milliseconds(TimeSpan timeout) => (int)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 1, int.MaxValue);
}

/// <summary>The per-hop budgets of a call path, outermost first; each must be shorter than the one before it.</summary>
public sealed class DeadlineBudgets
{
    /// <summary>What the first caller (a device, a UI) waits in total. Default 30 s.</summary>
    public TimeSpan Client { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The gateway's hop (the route that takes the request in). Default 25 s.</summary>
    public TimeSpan Gateway { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>The service's hop (the consumer, an enricher's request). Default 20 s.</summary>
    public TimeSpan Service { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>The database's hop (a query, a command timeout). Default 15 s.</summary>
    public TimeSpan Database { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Mistakes, each naming the setting under <paramref name="prefix"/>: a budget that is not positive, or not shorter than its caller's.</summary>
    public IEnumerable<string> Validate(string prefix = "Integration:Deadlines")
    {
        var hops = new (string Name, TimeSpan Budget)[] { ("Client", Client), ("Gateway", Gateway), ("Service", Service), ("Database", Database) };
        foreach (var (name, budget) in hops)
        {
            if (budget <= TimeSpan.Zero)
                yield return $"{prefix}:{name} must be positive, not {budget}";
        }

        for (var i = 1; i < hops.Length; i++)
        {
            if (hops[i].Budget >= hops[i - 1].Budget)
                yield return $"{prefix}:{hops[i].Name} ({hops[i].Budget}) must be shorter than {prefix}:{hops[i - 1].Name} ({hops[i - 1].Budget}): a hop cannot wait longer than its caller";
        }
    }
}

/// <summary>Adds <see cref="DeadlineFilter{T}"/> in front of every consumer's message types.</summary>
internal sealed class DeadlineObserver(TimeProvider time) : IConsumerConfigurationObserver, IHandlerConfigurationObserver
{
    public void HandlerConfigured<TMessage>(IHandlerConfigurator<TMessage> configurator)
        where TMessage : class =>
        configurator.UseFilter(new DeadlineFilter<TMessage>(time));

    public void ConsumerConfigured<TConsumer>(IConsumerConfigurator<TConsumer> configurator)
        where TConsumer : class
    {
    }

    public void ConsumerMessageConfigured<TConsumer, TMessage>(IConsumerMessageConfigurator<TConsumer, TMessage> configurator)
        where TConsumer : class
        where TMessage : class
    {
        if (configurator is IPipeConfigurator<ConsumeContext<TMessage>> message)
            message.UseFilter(new DeadlineFilter<TMessage>(time));
    }
}

/// <summary>Skips a message whose deadline has passed; otherwise settles its deadline, so its sends carry it on.</summary>
internal sealed class DeadlineFilter<T>(TimeProvider time) : IFilter<ConsumeContext<T>>
    where T : class
{
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        if (await DeadlineGuard.SkipIfPassed(context, null, time).ConfigureAwait(false))
            return;
        await next.Send(context).ConfigureAwait(false);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("deadline");
}

/// <summary>What routes and consumers do with a message's deadline before they start.</summary>
internal static class DeadlineGuard
{
    /// <summary>
    /// Settles the deadline of the consumed message (its header, capped by <paramref name="budget"/>; none and no budget:
    /// none) and returns false; or, if it has passed, moves the message to <c>&lt;queue&gt;_skipped</c> with the reason,
    /// faults a request back to its caller, and returns true: the caller must not start.
    /// </summary>
    public static async Task<bool> SkipIfPassed<T>(ConsumeContext<T> context, TimeSpan? budget, TimeProvider time)
        where T : class
    {
        var started = Stopwatch.GetTimestamp();
        var carried = MessageDeadline.From(context.Headers);
        if (carried is not null && carried.HasPassed(time))
        {
            await Skip(context, carried, started, time).ConfigureAwait(false);
            return true;
        }

        var deadline = budget is { } b ? (carried ?? MessageDeadline.After(b, time)).Hop(b, time) : carried;
        if (deadline is not null)
            MessageDeadline.Settle(context, deadline);
        return false;
    }

    static async Task Skip<T>(ConsumeContext<T> context, MessageDeadline deadline, long started, TimeProvider time)
        where T : class
    {
        var late = -deadline.Remaining(time);
        var queue = QueueName(context.ReceiveContext.InputAddress);
        var reason = $"deadline {deadline} passed {late.TotalMilliseconds:F0} ms before '{queue}' could start; not processed";
        var endpoint = await context.GetSendEndpoint(new Uri($"queue:{queue}_skipped")).ConfigureAwait(false);
        await endpoint.Send(context.Message, Pipe.Execute<SendContext<T>>(send =>
        {
            Routing.ReceivedMessage.Forward(context.ReceiveContext, send);
            send.Headers.Set(MessageDeadline.SkippedReasonHeader, reason);
            send.Headers.Set(MessageHeaders.Reason, "deadline-exceeded");
            send.Headers.Set(MessageDeadline.Header, deadline.ToString());
        })).ConfigureAwait(false);

        var elapsed = Stopwatch.GetElapsedTime(started);
        if (context.RequestId is not null && (context.ResponseAddress ?? context.FaultAddress) is not null)
            await context.NotifyFaulted(context, elapsed, "deadline", new DeadlineExceededException(reason)).ConfigureAwait(false);   // the caller gets a fault, not silence
        else
            await context.NotifyConsumed(context, elapsed, "deadline").ConfigureAwait(false);   // handled: not moved to _skipped a second time
    }

    static string QueueName(Uri address)
    {
        var path = address.AbsolutePath.TrimEnd('/');
        return path[(path.LastIndexOf('/') + 1)..];
    }
}
