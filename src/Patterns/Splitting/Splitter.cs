using System.Globalization;
using Integration.Patterns.History;
using Integration.Patterns.Routing;
using MassTransit;
using MassTransit.Context;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Patterns.Splitting;

/// <summary>
/// Where a message stands in a sequence (EIP "Message Sequence"): set by the splitter on every part it sends, as the
/// transport headers <see cref="IdHeader"/>, <see cref="IndexHeader"/> and <see cref="SizeHeader"/>; read by the
/// aggregator and the resequencer. Non-.NET producers can set the same headers.
/// </summary>
/// <param name="Id">The sequence (correlation) id: the id of the message that was split.</param>
/// <param name="Index">0-based position in the sequence.</param>
/// <param name="Size">Number of parts.</param>
public sealed record MessageSequence(string Id, int Index, int Size)
{
    /// <summary>Header with the sequence id.</summary>
    public const string IdHeader = "Integration-Sequence-Id";

    /// <summary>Header with the 0-based index.</summary>
    public const string IndexHeader = "Integration-Sequence-Index";

    /// <summary>Header with the number of parts.</summary>
    public const string SizeHeader = "Integration-Sequence-Size";

    /// <summary>
    /// The sequence of the message being consumed: the part a splitter earlier in this route is working on, else the
    /// headers the message arrived with; null when it carries none (or they are not numbers).
    /// </summary>
    public static MessageSequence? Of(ConsumeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.TryGetPayload(out SplitState? state) && state.Current is { } current)
            return current;
        return Read(context.Headers);
    }

    /// <summary>Reads the sequence headers; null when absent or malformed.</summary>
    public static MessageSequence? Read(Headers headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        var id = headers.Get<string>(IdHeader);
        if (string.IsNullOrWhiteSpace(id))
            return null;
        return int.TryParse(headers.Get<string>(IndexHeader), NumberStyles.Integer, CultureInfo.InvariantCulture, out var index)
               && int.TryParse(headers.Get<string>(SizeHeader), NumberStyles.Integer, CultureInfo.InvariantCulture, out var size)
               && index >= 0 && size > 0
            ? new MessageSequence(id, index, size)
            : null;
    }

    /// <summary>Writes the sequence headers.</summary>
    public void WriteTo(SendHeaders headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        headers.Set(IdHeader, Id);
        headers.Set(IndexHeader, Index.ToString(CultureInfo.InvariantCulture));
        headers.Set(SizeHeader, Size.ToString(CultureInfo.InvariantCulture));
    }
}

/// <summary>The part a splitter is sending down the route right now (the parts go one after the other).</summary>
sealed class SplitState
{
    public MessageSequence? Current { get; set; }
}

/// <summary>Splitter (EIP; Camel <c>split</c>): one message into several, each carrying its place in the sequence.</summary>
public static class SplitterExtensions
{
    /// <summary>
    /// Splits each message into the parts <paramref name="split"/> returns; the steps configured on the returned
    /// configurator run once per part, in order. Every message they send carries the sequence headers
    /// (<see cref="MessageSequence"/>: the split message's id, the part's 0-based index and the number of parts), so an
    /// aggregator or resequencer further on can put them back together. A message that splits into nothing ends here
    /// (counted in <c>integration.route.discarded</c> and logged). An exception fails the message before any part is sent.
    /// </summary>
    public static IRouteConfigurator<TPart> Split<T, TPart>(this IRouteConfigurator<T> route, Func<T, IEnumerable<TPart>> split, string? name = null)
        where T : class
        where TPart : class
    {
        ArgumentNullException.ThrowIfNull(route);
        return route.ContinueWith(new SplitterSpecification<T, TPart>(split, name ?? $"split:{typeof(TPart).Name}"));
    }
}

/// <summary>Specification of a splitter.</summary>
internal sealed class SplitterSpecification<T, TPart>(Func<T, IEnumerable<TPart>>? split, string name) : IRouteBridgeSpecification<T, TPart>
    where T : class
    where TPart : class
{
    /// <inheritdoc />
    public string Kind => "Split";

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (split is null)
            yield return "the split function is missing";
        if (string.IsNullOrWhiteSpace(name))
            yield return "the name is empty";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context, IPipe<ConsumeContext<TPart>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new SplitterFilter<T, TPart>(context.Route, split!, next, context.Services, context.Metrics);
    }
}

/// <summary>Runs the following steps once per part, each with its sequence position and its own copy of the history.</summary>
internal sealed partial class SplitterFilter<T, TPart>(string route, Func<T, IEnumerable<TPart>> split, IPipe<ConsumeContext<TPart>> downstream, IServiceProvider services,
    PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
    where TPart : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var parts = (split(context.Message) ?? []).ToList();
        if (parts.Any(p => p is null))
            throw new InvalidOperationException($"Route '{route}': the split function returned a null part");
        if (parts.Count == 0)
        {
            metrics.Discarded(route);
            LogEmpty(services.GetService<ILoggerFactory>()?.CreateLogger("Integration.Patterns.Splitter") ?? NullLogger.Instance, route, context.MessageId);
            return;
        }

        var sequenceId = (context.MessageId ?? NewId.NextGuid()).ToString("N");
        var history = MessageHistory.Of(context);
        var mark = history.Entries.Count;
        var state = context.GetOrAddPayload(() => new SplitState());
        var outer = state.Current;
        try
        {
            for (var i = 0; i < parts.Count; i++)
            {
                state.Current = new MessageSequence(sequenceId, i, parts.Count);
                history.TruncateTo(mark);
                await downstream.Send(new MessageConsumeContext<TPart>(context, parts[i])).ConfigureAwait(false);
            }
        }
        finally
        {
            state.Current = outer;
        }
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("split");
        scope.Add("from", typeof(T).Name);
        scope.Add("to", typeof(TPart).Name);
        downstream.Probe(scope);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Route {Route}: message {MessageId} split into no parts; it ends here (counted)")]
    static partial void LogEmpty(ILogger logger, string route, Guid? messageId);
}
