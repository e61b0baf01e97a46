using System.Text.Json;
using System.Text.Json.Nodes;
using Integration.Patterns.Routing;
using Integration.Patterns.Splitting;
using MassTransit;
using MassTransit.Context;

namespace Integration.Patterns.Normalization;

/// <summary>Declares how each input format maps to the canonical message.</summary>
public interface INormalizerConfigurator<TCanonical>
    where TCanonical : class
{
    /// <summary>JSON bodies are read as <typeparamref name="TJson"/>, then mapped.</summary>
    INormalizerConfigurator<TCanonical> Json<TJson>(Func<TJson, TCanonical> map);

    /// <summary>XML bodies are read as <typeparamref name="TXml"/> (elements and attributes to properties), then mapped.</summary>
    INormalizerConfigurator<TCanonical> Xml<TXml>(Func<TXml, TCanonical> map);

    /// <summary>CSV bodies: each record is read as <typeparamref name="TRow"/> (columns by the header line), then mapped; several records continue as a sequence.</summary>
    INormalizerConfigurator<TCanonical> Csv<TRow>(Func<TRow, TCanonical> map);
}

/// <summary>Normalizer (EIP): messages arriving in several formats become one canonical message.</summary>
public static class NormalizerExtensions
{
    /// <summary>
    /// Reads each <see cref="RawDocument"/> in its format (by content type, else by its first character) and maps it with
    /// the mapping declared for that format; the route continues with <typeparamref name="TCanonical"/>. A CSV body with
    /// several records continues once per record, as a sequence (<see cref="MessageSequence"/> headers). A body that
    /// cannot be read, a format with no mapping, or a failing mapping fails the message: to <c>&lt;queue&gt;_error</c> with
    /// the reason. Use with <c>RouteEndpointOptions.RawDocuments</c>.
    /// </summary>
    public static IRouteConfigurator<TCanonical> Normalize<TCanonical>(this IRouteConfigurator<RawDocument> route,
        Action<INormalizerConfigurator<TCanonical>> configure, string? name = null)
        where TCanonical : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(configure);
        var specification = new NormalizerSpecification<TCanonical>(name ?? $"normalize:{typeof(TCanonical).Name}");
        configure(specification);
        return route.ContinueWith(specification);
    }
}

/// <summary>Specification of a normalizer.</summary>
internal sealed class NormalizerSpecification<TCanonical> : IRouteBridgeSpecification<RawDocument, TCanonical>, INormalizerConfigurator<TCanonical>
    where TCanonical : class
{
    readonly List<(MessageFormat Format, Func<JsonNode?, TCanonical>? Map)> _mappings = [];

    internal NormalizerSpecification(string name) => Name = name;

    /// <inheritdoc />
    public string Kind => "Normalize";

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public INormalizerConfigurator<TCanonical> Json<TJson>(Func<TJson, TCanonical> map) => Add<TJson>(MessageFormat.Json, map);

    /// <inheritdoc />
    public INormalizerConfigurator<TCanonical> Xml<TXml>(Func<TXml, TCanonical> map) => Add<TXml>(MessageFormat.Xml, map);

    /// <inheritdoc />
    public INormalizerConfigurator<TCanonical> Csv<TRow>(Func<TRow, TCanonical> map) => Add<TRow>(MessageFormat.Csv, map);

    INormalizerConfigurator<TCanonical> Add<TIn>(MessageFormat format, Func<TIn, TCanonical>? map)
    {
        _mappings.Add((format, map is null ? null : node => map(FormatReader.Bind<TIn>(node, format))));
        return this;
    }

    /// <inheritdoc />
    public IEnumerable<string> Validate()
    {
        if (_mappings.Count == 0)
            yield return "no format is mapped; declare at least one of Json, Xml, Csv";
        foreach (var missing in _mappings.Where(m => m.Map is null))
            yield return $"the {missing.Format} mapping function is missing";
        foreach (var duplicate in _mappings.GroupBy(m => m.Format).Where(g => g.Count() > 1))
            yield return $"{duplicate.Key} is mapped {duplicate.Count()} times";
    }

    /// <inheritdoc />
    public IFilter<ConsumeContext<RawDocument>> Build(RouteStepContext context, IPipe<ConsumeContext<TCanonical>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new NormalizerFilter<TCanonical>(context.Route, _mappings.ToDictionary(m => m.Format, m => m.Map!), next);
    }
}

/// <summary>Reads, maps and continues with the canonical message.</summary>
internal sealed class NormalizerFilter<TCanonical>(string route, IReadOnlyDictionary<MessageFormat, Func<JsonNode?, TCanonical>> mappings,
    IPipe<ConsumeContext<TCanonical>> downstream) : IFilter<ConsumeContext<RawDocument>>
    where TCanonical : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<RawDocument> context, IPipe<ConsumeContext<RawDocument>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        var document = context.Message;
        var text = document.Text ?? "";
        var format = FormatReader.Detect(document.ContentType, text);
        if (!mappings.TryGetValue(format, out var map))
        {
            throw new NormalizationException(
                $"Route '{route}': no mapping for {format} bodies (content type '{document.ContentType ?? "none"}'); mapped: {string.Join(", ", mappings.Keys)}");
        }

        IReadOnlyList<JsonNode?> records;
        try
        {
            records = FormatReader.Read(format, text);
        }
        catch (NormalizationException exception) when (!exception.Message.StartsWith("Route ", StringComparison.Ordinal))
        {
            throw new NormalizationException($"Route '{route}': {exception.Message}");
        }

        var canonical = records.Select(r => Map(map, r, format)).ToList();
        if (canonical.Count == 1)
        {
            await downstream.Send(new MessageConsumeContext<TCanonical>(context, canonical[0])).ConfigureAwait(false);
            return;
        }

        var state = context.GetOrAddPayload(() => new SplitState());
        var outer = state.Current;
        var id = (context.MessageId ?? NewId.NextGuid()).ToString("N");
        var history = History.MessageHistory.Of(context);
        var mark = history.Entries.Count;
        try
        {
            for (var i = 0; i < canonical.Count; i++)
            {
                state.Current = new MessageSequence(id, i, canonical.Count);
                history.TruncateTo(mark);
                await downstream.Send(new MessageConsumeContext<TCanonical>(context, canonical[i])).ConfigureAwait(false);
            }
        }
        finally
        {
            state.Current = outer;
        }
    }

    TCanonical Map(Func<JsonNode?, TCanonical> map, JsonNode? record, MessageFormat format)
    {
        try
        {
            return map(record) ?? throw new NormalizationException($"Route '{route}': the {format} mapping returned null");
        }
        catch (NormalizationException exception) when (!exception.Message.StartsWith("Route ", StringComparison.Ordinal))
        {
            throw new NormalizationException($"Route '{route}': {exception.Message}");
        }
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("normalize");
        scope.Add("formats", string.Join(",", mappings.Keys));
        scope.Add("to", typeof(TCanonical).Name);
        downstream.Probe(scope);
    }
}
