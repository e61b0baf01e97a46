using Integration.Patterns.Deadlines;
using Integration.Patterns.Routing;
using MassTransit;
using MassTransit.Context;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Patterns.Enrichment;

/// <summary>
/// Thrown when the enricher's lookup or request timed out, faulted or returned nothing. The message is retried (the
/// route's <c>Retry</c> option), then goes to <c>&lt;queue&gt;_error</c> with this reason: an enrichment never drops a message.
/// </summary>
public sealed class EnrichmentException(string message) : Exception(message);

/// <summary>Content enricher (EIP; Camel <c>enrich</c>/<c>pollEnrich</c>): adds data from a lookup or a request/response call.</summary>
public static class ContentEnricherExtensions
{
    /// <summary>
    /// Looks up data for each message with <paramref name="lookup"/> (a database, a cache, an HTTP call), at most
    /// <paramref name="timeout"/> (default 5 s; the token is cancelled then), and continues with what
    /// <paramref name="merge"/> makes of the message and the data.
    /// </summary>
    public static IRouteConfigurator<TOut> Enrich<T, TData, TOut>(this IRouteConfigurator<T> route, Func<T, CancellationToken, Task<TData>> lookup,
        Func<T, TData, TOut> merge, TimeSpan? timeout = null, string? name = null)
        where T : class
        where TOut : class
    {
        ArgumentNullException.ThrowIfNull(route);
        Func<ConsumeContext<T>, IServiceProvider, CancellationToken, Task<TData>>? fetch = lookup is null ? null : (context, _, token) => lookup(context.Message, token);
        return route.ContinueWith(new ContentEnricherSpecification<T, TData, TOut>(fetch, merge, timeout ?? TimeSpan.FromSeconds(5),
            name ?? $"enrich:{typeof(TData).Name}", "the lookup function", null));
    }

    /// <summary>
    /// Asks a service for data with a MassTransit request (<typeparamref name="TRequest"/> to queue <paramref name="service"/>,
    /// answered with <typeparamref name="TResponse"/>) and continues with what <paramref name="merge"/> makes of the message
    /// and the response. No response within <paramref name="timeout"/> (default 5 s), or a faulted request, fails the message.
    /// </summary>
    public static IRouteConfigurator<TOut> EnrichByRequest<T, TRequest, TResponse, TOut>(this IRouteConfigurator<T> route, string service,
        Func<T, TRequest> request, Func<T, TResponse, TOut> merge, TimeSpan? timeout = null, string? name = null)
        where T : class
        where TRequest : class
        where TResponse : class
        where TOut : class
    {
        ArgumentNullException.ThrowIfNull(route);
        var wait = timeout ?? TimeSpan.FromSeconds(5);
        Func<ConsumeContext<T>, IServiceProvider, CancellationToken, Task<TResponse>>? fetch = request is null
            ? null
            : async (context, services, token) =>
            {
                // The request waits what is left of the message's deadline, capped by the timeout, and carries that deadline on.
                var factory = services.GetRequiredService<IClientFactory>();
                var address = await QueueAddressing.SendAddressAsync(context, services, service, token).ConfigureAwait(false);
                var response = await factory.GetResponseWithin<TRequest, TResponse>(address, request(context.Message), wait, context,
                    services.GetService<TimeProvider>(), token).ConfigureAwait(false);
                return response.Message;
            };
        return route.ContinueWith(new ContentEnricherSpecification<T, TResponse, TOut>(fetch, merge, wait,
            name ?? $"enrich:{service}", "the request function", service));
    }
}

/// <summary>Specification of a content enricher.</summary>
internal sealed class ContentEnricherSpecification<T, TData, TOut>(
    Func<ConsumeContext<T>, IServiceProvider, CancellationToken, Task<TData>>? fetch, Func<T, TData, TOut>? merge, TimeSpan timeout, string name,
    string fetchName, string? service) : IRouteBridgeSpecification<T, TOut>
    where T : class
    where TOut : class
{
    /// <inheritdoc />
    public string Kind => "Enrich";

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (fetch is null)
            yield return $"{fetchName} is missing";
        if (merge is null)
            yield return "the merge function is missing";
        if (timeout <= TimeSpan.Zero || timeout > TimeSpan.FromMinutes(10))
            yield return $"timeout must be positive and at most 10 minutes, not {timeout}";
        if (service is not null && !RouteSender.IsValidQueueName(service))
            yield return $"service queue '{service}' is not a valid queue name";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context, IPipe<ConsumeContext<TOut>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new ContentEnricherFilter<T, TData, TOut>(context.Route, name, fetch!, merge!, timeout, service, context.Services, next);
    }
}

/// <summary>Fetches with a deadline, merges, continues; every failure becomes an <see cref="EnrichmentException"/> naming the step.</summary>
internal sealed class ContentEnricherFilter<T, TData, TOut>(
    string route, string name, Func<ConsumeContext<T>, IServiceProvider, CancellationToken, Task<TData>> fetch, Func<T, TData, TOut> merge,
    TimeSpan timeout, string? service, IServiceProvider services, IPipe<ConsumeContext<TOut>> downstream) : IFilter<ConsumeContext<T>>
    where T : class
    where TOut : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var source = service is null ? "the lookup" : $"the request to '{service}'";
        TData data;
        TimeSpan wait;
        try
        {
            // What is left of the message's deadline, capped by the enricher's own timeout.
            wait = MessageDeadline.HopTimeout(MessageDeadline.Of(context), timeout, services.GetService<TimeProvider>());
        }
        catch (DeadlineExceededException exception)
        {
            throw new EnrichmentException($"Route '{route}', {name}: {source} was not started: {exception.Message}");
        }

        using (var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken))
        {
            deadline.CancelAfter(wait);
            try
            {
                data = await fetch(context, services, deadline.Token).WaitAsync(wait, context.CancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is TimeoutException or RequestTimeoutException
                                              || (exception is OperationCanceledException && !context.CancellationToken.IsCancellationRequested))
            {
                throw new EnrichmentException($"Route '{route}', {name}: {source} timed out after {wait.TotalSeconds:0.###} s");
            }
            catch (RequestFaultException exception)
            {
                throw new EnrichmentException($"Route '{route}', {name}: {source} faulted: {exception.Fault?.Exceptions.FirstOrDefault()?.Message ?? exception.Message}");
            }
            catch (Exception exception) when (exception is not OperationCanceledException)
            {
                throw new EnrichmentException($"Route '{route}', {name}: {source} failed: {exception.GetBaseException().Message}");
            }
        }

        if (data is null)
            throw new EnrichmentException($"Route '{route}', {name}: {source} found nothing for this message");
        var enriched = merge(context.Message, data) ?? throw new EnrichmentException($"Route '{route}', {name}: the merge function returned null");
        await downstream.Send(new MessageConsumeContext<TOut>(context, enriched)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("enrich");
        scope.Add("source", service ?? "lookup");
        scope.Add("timeout", timeout.ToString());
        downstream.Probe(scope);
    }
}
