using System.Collections.Frozen;
using Integration.Patterns.Routing;
using MassTransit;

namespace Integration.Patterns.ContentRouting;

/// <summary>Where a content-based router sends a message: a closed set of outcomes, not a string that may be null.</summary>
internal abstract record RoutingDecision
{
    RoutingDecision()
    {
    }

    /// <summary>Send to <paramref name="Destination"/>, because of <paramref name="Clause"/>.</summary>
    public sealed record To(string Destination, string Clause) : RoutingDecision;

    /// <summary>No clause matched and there is no otherwise (only possible in a table replaced without one; validation refuses it).</summary>
    public sealed record NoMatch : RoutingDecision;
}

/// <summary>Declares a content-based router's clauses. They are tried in order; the first match wins.</summary>
public interface IContentRouterConfigurator<T>
    where T : class
{
    /// <summary>Messages <paramref name="predicate"/> is true for go to <paramref name="destination"/>.</summary>
    IContentRouterConfigurator<T> When(Func<T, bool> predicate, string destination);

    /// <summary>Routes by a key taken from each message; then declare the keys with <see cref="WhenKey"/>. Keyed tables can be replaced at run time from data (the control bus).</summary>
    IContentRouterConfigurator<T> ByKey(Func<T, string?> key);

    /// <summary>Messages whose key (see <see cref="ByKey"/>) equals <paramref name="key"/> (ordinal, ignoring case) go to <paramref name="destination"/>.</summary>
    IContentRouterConfigurator<T> WhenKey(string key, string destination);

    /// <summary>Where messages no clause matched go. Required: a router never drops a message silently.</summary>
    IContentRouterConfigurator<T> Otherwise(string destination);
}

/// <summary>An immutable routing table.</summary>
internal sealed class RoutingTable<T>
    where T : class
{
    readonly IReadOnlyList<(Func<T, bool> Predicate, string Destination, string Clause)> _predicates;
    readonly Func<T, string?>? _key;
    readonly FrozenDictionary<string, string> _keys;

    internal RoutingTable(IReadOnlyList<(Func<T, bool>, string, string)> predicates, Func<T, string?>? key, IReadOnlyDictionary<string, string> keys, string? otherwise)
    {
        _predicates = predicates;
        _key = key;
        _keys = keys.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
        Otherwise = otherwise;
    }

    /// <summary>Destination when nothing matches.</summary>
    public string? Otherwise { get; }

    /// <summary>Key → destination clauses.</summary>
    public IReadOnlyDictionary<string, string> Keys => _keys;

    /// <summary>Every destination the table can send to.</summary>
    public IEnumerable<string> Destinations => _predicates.Select(p => p.Destination).Concat(_keys.Values).Concat(Otherwise is null ? [] : [Otherwise]).Distinct();

    internal Func<T, string?>? KeySelector => _key;

    internal IReadOnlyList<(Func<T, bool> Predicate, string Destination, string Clause)> Predicates => _predicates;

    /// <summary>Decides where <paramref name="message"/> goes.</summary>
    public RoutingDecision Decide(T message)
    {
        foreach (var (predicate, destination, clause) in _predicates)
        {
            if (predicate(message))
                return new RoutingDecision.To(destination, clause);
        }

        if (_key is not null && _key(message) is { } key && _keys.TryGetValue(key, out var keyed))
            return new RoutingDecision.To(keyed, $"key={key}");

        return Otherwise is null ? new RoutingDecision.NoMatch() : new RoutingDecision.To(Otherwise, "otherwise");
    }

    internal IEnumerable<string> Validate()
    {
        if (_predicates.Count == 0 && _keys.Count == 0)
            yield return "it has no When or WhenKey clause";
        if (Otherwise is null)
            yield return "no Otherwise: a message no clause matches would have nowhere to go; add Otherwise(queue)";
        if (_keys.Count > 0 && _key is null)
            yield return "WhenKey clauses need ByKey(selector) first";
        foreach (var destination in Destinations.Where(d => !RouteSender.IsValidQueueName(d)))
            yield return $"destination '{destination}' is not a valid queue name";
    }
}

sealed class ContentRouterConfigurator<T> : IContentRouterConfigurator<T>
    where T : class
{
    readonly List<(Func<T, bool>, string, string)> _predicates = [];
    readonly Dictionary<string, string> _keys = new(StringComparer.OrdinalIgnoreCase);
    readonly List<string> _failures = [];
    Func<T, string?>? _key;
    string? _otherwise;

    public IContentRouterConfigurator<T> When(Func<T, bool> predicate, string destination)
    {
        if (predicate is null)
            _failures.Add($"When clause {_predicates.Count + 1} has no predicate");
        else
            _predicates.Add((predicate, destination, $"when#{_predicates.Count + 1}"));
        return this;
    }

    public IContentRouterConfigurator<T> ByKey(Func<T, string?> key)
    {
        _key = key;
        return this;
    }

    public IContentRouterConfigurator<T> WhenKey(string key, string destination)
    {
        if (string.IsNullOrWhiteSpace(key))
            _failures.Add("WhenKey needs a non-empty key");
        else if (!_keys.TryAdd(key, destination))
            _failures.Add($"WhenKey '{key}' is declared twice");
        return this;
    }

    public IContentRouterConfigurator<T> Otherwise(string destination)
    {
        if (_otherwise is not null)
            _failures.Add("Otherwise is declared twice");
        _otherwise = destination;
        return this;
    }

    public (RoutingTable<T> Table, IReadOnlyList<string> Failures) Build()
    {
        var table = new RoutingTable<T>(_predicates.ToList(), _key, _keys, _otherwise);
        return (table, _failures.Concat(table.Validate()).ToList());
    }
}

/// <summary>Content-based router (EIP; Camel <c>choice</c>/<c>when</c>/<c>otherwise</c>).</summary>
public static class ContentRouterExtensions
{
    /// <summary>
    /// Sends each message to the destination of the first matching clause, or to Otherwise; the route ends here.
    /// A router without Otherwise, or without clauses, stops the bus from starting. Its table is replaceable at run time
    /// under <paramref name="name"/> (default <c>router</c>) through <see cref="RouteControl"/>.
    /// </summary>
    public static IRouteConfigurator<T> Route<T>(this IRouteConfigurator<T> route, Action<IContentRouterConfigurator<T>> clauses, string name = "router")
        where T : class
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(clauses);
        var configurator = new ContentRouterConfigurator<T>();
        clauses(configurator);
        return route.AddStep(new ContentRouterSpecification<T>(name, configurator.Build()));
    }
}

/// <summary>Specification of a content-based router.</summary>
internal sealed class ContentRouterSpecification<T>(string name, (RoutingTable<T> Table, IReadOnlyList<string> Failures) table) : IRouteStepSpecification<T>
    where T : class
{
    /// <inheritdoc />
    public string Kind => "Route";

    /// <inheritdoc />
    public string Name => $"route:{name}";

    /// <inheritdoc />
    public bool IsTerminal => true;

    /// <inheritdoc />
    public IEnumerable<string> Validate() => table.Failures;

    /// <inheritdoc />
    public IFilter<ConsumeContext<T>> Build(RouteStepContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var state = new RouterState<T>(context.Route, name, table.Table);
        context.Control.AddRoutingTable(state);
        return new ContentRouterFilter<T>(state, context.Metrics);
    }
}

/// <summary>The router's table in force; replaced whole, atomically.</summary>
internal sealed class RouterState<T>(string route, string name, RoutingTable<T> table) : IReplaceableRoutingTable
    where T : class
{
    RoutingTable<T> _table = table;

    /// <inheritdoc />
    public string Route { get; } = route;

    /// <inheritdoc />
    public string Name { get; } = name;

    /// <summary>The table in force.</summary>
    public RoutingTable<T> Table => Volatile.Read(ref _table);

    /// <summary>Replaces the table from code (typed clauses). On any mistake nothing changes and the failures are returned.</summary>
    public IReadOnlyList<string> Replace(Action<IContentRouterConfigurator<T>> clauses)
    {
        ArgumentNullException.ThrowIfNull(clauses);
        var configurator = new ContentRouterConfigurator<T>();
        clauses(configurator);
        var (table, failures) = configurator.Build();
        if (failures.Count == 0)
            Volatile.Write(ref _table, table);
        return failures;
    }

    /// <inheritdoc />
    public IReadOnlyList<string> ReplaceKeyed(IReadOnlyDictionary<string, string> keys, string? otherwise)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var current = Table;
        if (current.KeySelector is null)
            return [$"Router '{Name}' of route '{Route}' is not keyed (declare it with ByKey) and can only be replaced from code"];
        var (table, failures) = Build(current, keys, otherwise);
        if (failures.Count == 0)
            Volatile.Write(ref _table, table);
        return failures;
    }

    static (RoutingTable<T>, IReadOnlyList<string>) Build(RoutingTable<T> current, IReadOnlyDictionary<string, string> keys, string? otherwise)
    {
        var configurator = new ContentRouterConfigurator<T>();
        foreach (var (predicate, destination, _) in current.Predicates)
            configurator.When(predicate, destination);
        configurator.ByKey(current.KeySelector!);
        foreach (var (key, destination) in keys)
            configurator.WhenKey(key, destination);
        if (otherwise is not null)
            configurator.Otherwise(otherwise);
        return configurator.Build();
    }

    /// <inheritdoc />
    public object Describe() => new { keys = Table.Keys, otherwise = Table.Otherwise, predicates = Table.Predicates.Select(p => new { p.Clause, p.Destination }) };
}

/// <summary>Decides and sends; the message's route ends here.</summary>
internal sealed class ContentRouterFilter<T>(RouterState<T> state, PatternMetrics metrics) : IFilter<ConsumeContext<T>>
    where T : class
{
    /// <inheritdoc />
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        switch (state.Table.Decide(context.Message))
        {
            case RoutingDecision.To to:
                await RouteSender.SendAsync(context, to.Destination, context.Message).ConfigureAwait(false);
                metrics.Forwarded(state.Route, to.Destination);
                break;
            default:
                throw new InvalidOperationException($"Route '{state.Route}', router '{state.Name}': no clause matched and there is no Otherwise");
        }
    }

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("contentRouter");
        scope.Add("name", state.Name);
        scope.Add("destinations", string.Join(",", state.Table.Destinations));
        scope.Add("otherwise", state.Table.Otherwise ?? "");
    }
}
