using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.RecipientList;

/// <summary>Recipient list (EIP; Camel <c>recipientList</c>): the same message to several queues, static or computed per message.</summary>
public static class RecipientListExtensions
{
    /// <summary>Sends each message to every queue in <paramref name="recipients"/>; the route ends here.</summary>
    public static IRouteConfigurator<T> RecipientList<T>(this IRouteConfigurator<T> route, params string[] recipients)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        var fixedList = recipients ?? [];
        return route.AddStep(new RecipientListSpecification<T>(_ => fixedList, fixedList, 3));
    }

    /// <summary>
    /// Sends each message to the queues <paramref name="recipients"/> computes for it. Each recipient is delivered on its
    /// own: a failing one is retried (<paramref name="attempts"/> in all, with backoff), then parked in the route's error
    /// queue with <c>Integration-Failed-Recipient</c> and the reason, while the others are still delivered.
    /// </summary>
    public static IRouteConfigurator<T> RecipientList<T>(this IRouteConfigurator<T> route, Func<T, IEnumerable<string>> recipients, int attempts = 3)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.AddStep(new RecipientListSpecification<T>(recipients, null, attempts));
    }
}

/// <summary>Specification of a recipient list.</summary>
internal sealed class RecipientListSpecification<T>(Func<T, IEnumerable<string>>? recipients, IReadOnlyList<string>? fixedList, int attempts) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "RecipientList";

    /// <inheritdoc />
    public string Name => fixedList is null ? "recipients:computed" : $"recipients:{string.Join(",", fixedList)}";

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (recipients is null)
            yield return "the recipients function is missing";
        if (fixedList is { Count: 0 })
            yield return "the recipient list is empty";
        foreach (var queue in fixedList?.Where(q => !RouteSender.IsValidQueueName(q)) ?? [])
            yield return $"recipient '{queue}' is not a valid queue name";
        if (attempts is < 1 or > 20)
            yield return $"attempts must be 1 to 20, not {attempts}";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new RecipientListFilter<T>(context.Route, context.ErrorQueue, recipients!, attempts, context.Services, context.Metrics);
    }
}

/// <summary>The outcome for one recipient of one message.</summary>
/// <param name="Recipient">Queue.</param>
/// <param name="Delivered">Whether it was sent.</param>
/// <param name="Attempts">How many sends it took or were tried.</param>
/// <param name="Error">The last failure, when not delivered.</param>
public sealed record RecipientStatus(string Recipient, bool Delivered, int Attempts, string? Error);

/// <summary>Headers on the copy a recipient list parks in the route's error queue when a recipient cannot be reached.</summary>
public static class RecipientListHeaders
{
    /// <summary>The recipient (queue) the copy could not reach.</summary>
    public const string FailedRecipient = "Integration-Failed-Recipient";

    /// <summary>The last failure.</summary>
    public const string FailureReason = "Integration-Failure-Reason";
}

/// <summary>Per-recipient results of the message being consumed, for steps and tests that want them.</summary>
public sealed class RecipientListResult
{
    /// <summary>One entry per recipient.</summary>
    public IReadOnlyList<RecipientStatus> Recipients { get; internal set; } = [];
}

/// <summary>Delivers to every recipient independently; a recipient that keeps failing is parked in the error queue, never dropped.</summary>
internal sealed class RecipientListFilter<T>(string route, string errorQueue, Func<T, IEnumerable<string>> recipients, int attempts, IServiceProvider services,
    PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var targets = recipients(context.Message)?.Distinct(StringComparer.Ordinal).ToList() ?? [];
        var invalid = targets.Where(t => !RouteSender.IsValidQueueName(t)).ToList();
        if (targets.Count == 0 || invalid.Count > 0)
        {
            throw new InvalidOperationException(targets.Count == 0
                ? $"Route '{route}': the recipient list computed no recipient for this message"
                : $"Route '{route}': computed recipient(s) {string.Join(", ", invalid.Select(i => $"'{i}'"))} are not valid queue names");
        }

        var statuses = await Task.WhenAll(targets.Select(target => Deliver(context, target))).ConfigureAwait(false);
        context.GetOrAddPayload(() => new RecipientListResult()).Recipients = statuses;
    }

    async Task<RecipientStatus> Deliver(ConsumeContext<T> context, string target)
    {
        Exception? last = null;
        for (var attempt = 1; attempt <= attempts; attempt++)
        {
            try
            {
                await RouteSender.SendIsolatedAsync(services, context, target, context.Message).ConfigureAwait(false);
                metrics.Forwarded(route, target);
                return new RecipientStatus(target, true, attempt, null);
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                last = exception;
                if (attempt < attempts)
                    await Task.Delay(TimeSpan.FromMilliseconds(100 * Math.Pow(2, attempt - 1) + Random.Shared.Next(50)), context.CancellationToken).ConfigureAwait(false);
            }
        }

        // Parked, not dropped: if even this fails, the exception fails the message and it is redelivered.
        metrics.RecipientFailed(route, target);
        await RouteSender.SendAsync(context, errorQueue, context.Message, send =>
        {
            send.Headers.Set(RecipientListHeaders.FailedRecipient, target);
            send.Headers.Set(RecipientListHeaders.FailureReason, last?.Message);
        }).ConfigureAwait(false);
        return new RecipientStatus(target, false, attempts, last?.Message);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("recipientList");
        scope.Add("attempts", attempts);
        scope.Add("errorQueue", errorQueue);
    }
}
