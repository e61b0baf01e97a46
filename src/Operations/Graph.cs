using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.Json;
using Integration.Patterns.Routing;
using Integration.Patterns.RoutingSlips;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Operations;

/// <summary><c>graph</c> (Viewer): routes, routing slips and saga state machines as one graph, with live counts, rates and recent history per node.</summary>
public sealed record ShowGraph;

/// <summary>Counters the graph reads, by key (in this process, since it started).</summary>
sealed class GraphCounters
{
    readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);

    public void Add(string key, long value = 1) => _counts.AddOrUpdate(key, value, (_, old) => old + value);

    public long this[string key] => _counts.GetValueOrDefault(key);

    public static string Received(string queue) => "received|" + queue;

    public static string Faulted(string queue) => "faulted|" + queue;

    public static string Forwarded(string route, string destination) => $"forwarded|{route}|{destination}";

    public static string ForwardedTo(string destination) => "forwarded-to|" + destination;

    public static string Failed(string route, string destination) => $"failed|{route}|{destination}";

    public static string Discarded(string route) => "discarded|" + route;

    public static string SagaTransition(string saga, string from, string to, string @event) => $"transition|{saga}|{from}|{to}|{@event}";

    public static string SagaFault(string saga, string state) => $"saga-fault|{saga}|{state}";
}

/// <summary>A node of the graph, from a definition: a route's queue, step or destination; an itinerary's activity; a saga's state.</summary>
sealed record GraphNode(string Id, string Kind, string Label, string Group, string? Queue = null);

/// <summary>A link between two nodes: a route's flow, a send, a transition (<see cref="Label"/> is the key or event); <see cref="Count"/> reads its messages.</summary>
sealed record GraphLink(string Source, string Target, string Kind, string? Label, Func<GraphCounters, long>? Count);

/// <summary>The graph's shape, built once from the definitions (routes, itineraries, state machines).</summary>
sealed record GraphShape(IReadOnlyList<GraphNode> Nodes, IReadOnlyList<GraphLink> Links);

/// <summary>
/// Counts what flows through the graph, in this process: messages received and faulted per queue (a receive observer on
/// the bus), messages each route sent to each destination (the <c>Integration.Patterns</c> meter of this host), saga
/// transitions (the timeline observer); samples every node's count every <c>Integration:Operations:RefreshSeconds</c>
/// into a ring buffer of the last <see cref="HistoryLength"/> samples.
/// </summary>
sealed partial class GraphMonitor : BackgroundService, IReceiveObserver
{
    /// <summary>Samples kept per node.</summary>
    public const int HistoryLength = 60;

    readonly GraphCounters _counters;
    readonly IServiceProvider _services;
    readonly IConfiguration _configuration;
    readonly TimeProvider _time;
    readonly ILogger<GraphMonitor> _logger;
    readonly MeterListener _listener = new();
    readonly ConcurrentDictionary<string, Ring> _history = new(StringComparer.Ordinal);
    readonly Lazy<GraphShape> _shape;

    public GraphMonitor(GraphCounters counters, IServiceProvider services, IMeterFactory meters, IConfiguration configuration, TimeProvider time,
        ILogger<GraphMonitor> logger)
    {
        _counters = counters;
        _services = services;
        _configuration = configuration;
        _time = time;
        _logger = logger;
        _shape = new Lazy<GraphShape>(Build);
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            // Only this host's meter (two hosts in one process count apart).
            if (instrument.Meter.Name == PatternDiagnostics.Name && ReferenceEquals(instrument.Meter.Scope, meters)
                && instrument.Name is "integration.route.forwarded" or "integration.route.discarded" or "integration.route.recipient.failures"
                    or "integration.route.wiretap.failures")
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? route = null, destination = null;
            foreach (var tag in tags)
            {
                if (tag.Key == "route")
                    route = tag.Value as string;
                else if (tag.Key == "destination")
                    destination = tag.Value as string;
            }

            if (route is null)
                return;
            switch (instrument.Name)
            {
                case "integration.route.forwarded" when destination is not null:
                    _counters.Add(GraphCounters.Forwarded(route, destination), value);
                    _counters.Add(GraphCounters.ForwardedTo(destination), value);
                    break;
                case "integration.route.discarded":
                    _counters.Add(GraphCounters.Discarded(route), value);
                    break;
                case "integration.route.recipient.failures" or "integration.route.wiretap.failures" when destination is not null:
                    _counters.Add(GraphCounters.Failed(route, destination), value);
                    break;
            }
        });
        _listener.Start();
    }

    public GraphShape Shape => _shape.Value;

    TimeSpan Interval => TimeSpan.FromSeconds(Math.Clamp(_configuration.GetValue(OperationsOverview.IntervalSetting, 5), 1, 3600));

    public IReadOnlyList<long> History(string node) => _history.TryGetValue(node, out var ring) ? ring.Values() : [];

    /// <summary>The count each node shows now; saga states show their instances (from <paramref name="instances"/>), the others messages since start.</summary>
    public long Count(GraphNode node, IReadOnlyDictionary<string, long> instances) => node.Kind switch
    {
        "state" => instances.GetValueOrDefault(node.Id),
        "saga" => Shape.Links.Where(l => l.Kind == "transition" && l.Source.StartsWith($"state:{node.Label}:", StringComparison.Ordinal)).Sum(LinkCount),
        // A destination: what the routes sent to it (or, when this host consumes it, what it received, if more).
        "queue" or "error" => Math.Max(Shape.Links.Where(l => l.Target == node.Id).Sum(LinkCount), _counters[GraphCounters.Received(node.Queue!)]),
        _ => node.Queue is null ? 0 : _counters[GraphCounters.Received(node.Queue)],
    };

    public long Errors(GraphNode node) => node.Queue is null ? 0 : _counters[GraphCounters.Faulted(node.Queue)];

    public long LinkCount(GraphLink link) => link.Count?.Invoke(_counters) ?? 0;

    /// <summary>Saga instances by state node id, measured now.</summary>
    public async Task<IReadOnlyDictionary<string, long>> InstancesAsync(CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        if (_services.GetService<SagaInspection>() is not { } inspection || inspection.Sagas.Count == 0)
            return result;
        await using var scope = _services.GetRequiredService<IServiceScopeFactory>().CreateAsyncScope();
        var db = _services.GetRequiredService<OperationsDatabase>().Open(scope.ServiceProvider);
        foreach (var saga in inspection.Sagas)
        {
            foreach (var count in await saga.CountAsync(db, cancellationToken).ConfigureAwait(false))
                result[$"state:{saga.Saga}:{count.State}"] = count.Count;
        }

        return result;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await SampleAsync(stoppingToken).ConfigureAwait(false);
                await Task.Delay(Interval, _time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception exception)
            {
                LogSampleFailed(_logger, exception);
                await Task.Delay(Interval, _time, stoppingToken).ConfigureAwait(false);
            }
        }
    }

    async Task SampleAsync(CancellationToken cancellationToken)
    {
        IReadOnlyDictionary<string, long> instances;
        try
        {
            instances = await InstancesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            LogSampleFailed(_logger, exception);
            instances = new Dictionary<string, long>();
        }

        foreach (var node in Shape.Nodes)
            _history.GetOrAdd(node.Id, _ => new Ring(HistoryLength)).Add(Count(node, instances));
    }

    public override void Dispose()
    {
        _listener.Dispose();
        base.Dispose();
    }

    // ---- the bus: every message received, by queue ----

    static string QueueOf(ReceiveContext context) => context.InputAddress.AbsolutePath.Split('/', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";

    public Task PreReceive(ReceiveContext context) => Task.CompletedTask;

    public Task PostReceive(ReceiveContext context)
    {
        _counters.Add(GraphCounters.Received(QueueOf(context)));
        return Task.CompletedTask;
    }

    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType)
        where T : class => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception)
        where T : class
    {
        Faulted(context.ReceiveContext);
        return Task.CompletedTask;
    }

    public Task ReceiveFault(ReceiveContext context, Exception exception)
    {
        _counters.Add(GraphCounters.Received(QueueOf(context)));
        Faulted(context);
        return Task.CompletedTask;
    }

    /// <summary>Counts a message's fault once, however many attempts or consumers failed.</summary>
    void Faulted(ReceiveContext context)
    {
        var seen = context.GetOrAddPayload(() => new FaultSeen());
        if (Interlocked.Exchange(ref seen.Counted, 1) == 0)
            _counters.Add(GraphCounters.Faulted(QueueOf(context)));
    }

    sealed class FaultSeen
    {
        public int Counted;
    }

    // ---- the shape, from the definitions ----

    GraphShape Build()
    {
        var nodes = new Dictionary<string, GraphNode>(StringComparer.Ordinal);
        var links = new List<GraphLink>();
        GraphNode Add(GraphNode node) => nodes.TryGetValue(node.Id, out var existing) ? existing : nodes[node.Id] = node;

        var routes = _services.GetService<RouteControl>()?.Routes ?? [];
        var inputs = routes.Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
        string Target(string queue, string group, bool error = false) =>
            inputs.Contains(queue) ? "route:" + queue : Add(new GraphNode("queue:" + queue, error ? "error" : "queue", queue, group, queue)).Id;

        var control = _services.GetService<RouteControl>();
        foreach (var route in routes)
        {
            var group = "route:" + route.Name;
            var previous = Add(new GraphNode(group, "route", route.Name, group, route.Name)).Id;
            var received = GraphCounters.Received(route.Name);
            var name = route.Name;
            foreach (var step in route.Steps)
            {
                var id = $"step:{route.Name}:{step.Index}";
                Add(new GraphNode(id, "step", step.Name, group, route.Name));
                links.Add(new GraphLink(previous, id, "flow", null, c => c[received]));
                previous = id;
                var argument = step.Name.Contains(':', StringComparison.Ordinal) ? step.Name[(step.Name.IndexOf(':', StringComparison.Ordinal) + 1)..] : null;
                void Send(string destination, string kind, string? label, bool error = false) =>
                    links.Add(new GraphLink(id, Target(destination, group, error), kind, label, error
                        ? c => c[GraphCounters.Faulted(name)]
                        : c => c[GraphCounters.Forwarded(name, destination)]));
                if (step.Kind == "WireTap" && argument is not null)
                {
                    // A wire tap copies every message that reaches it, but for the copies that failed.
                    var tapped = argument;
                    links.Add(new GraphLink(id, Target(tapped, group), "copy", "copy", c => Math.Max(0, c[received] - c[GraphCounters.Failed(name, tapped)])));
                }
                else if (step.Kind == "Detour" && argument is not null)
                    Send(argument, "detour", "detour");
                else if (step.Kind is "Filter" or "MessageFilter" && argument is not null)
                    Send(argument, "send", "rejected");
                else if (step.Kind == "Validate" || step.Name == "validate")
                    Send(route.Name + DeadLetterService.ErrorSuffix, "error", "invalid", error: true);
                else if (step.Name.StartsWith("to:", StringComparison.Ordinal) && argument is not null)
                    Send(argument, "send", null);
                else if (step.Name.StartsWith("recipients:", StringComparison.Ordinal) && argument is not null and not "computed")
                {
                    foreach (var recipient in argument.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        Send(recipient, "send", null);
                }
                else if (step.Name.StartsWith("route:", StringComparison.Ordinal) && control?.FindRoutingTable(route.Name, argument ?? "") is { } table)
                {
                    foreach (var (destination, label) in Destinations(table))
                        Send(destination, "send", label);
                }
            }
        }

        foreach (var itinerary in _services.GetService<IItineraries>()?.All ?? [])
        {
            var group = "itinerary:" + itinerary.Name;
            var previous = Add(new GraphNode(group, "itinerary", itinerary.Name, group)).Id;
            foreach (var activity in itinerary.Activities())
            {
                var id = $"activity:{itinerary.Name}:{activity.Name}";
                Add(new GraphNode(id, "activity", activity.Name, group, activity.ExecuteQueue));
                var queue = activity.ExecuteQueue;
                links.Add(new GraphLink(previous, id, "flow", null, c => c[GraphCounters.Received(queue)]));
                previous = id;
            }

            foreach (var tap in itinerary.WireTaps)
                links.Add(new GraphLink(group, Target(tap.Queue, group), "copy", "events", null));
        }

        foreach (var saga in _services.GetService<SagaInspection>()?.Sagas ?? [])
        {
            var group = "saga:" + saga.Saga;
            Add(new GraphNode(group, "saga", saga.Saga, group));
            if (saga.Describe(_services) is not { } definition)
                continue;
            foreach (var state in definition.States)
                Add(new GraphNode($"state:{saga.Saga}:{state}", "state", state, group));
            links.Add(new GraphLink(group, $"state:{saga.Saga}:{definition.Initial}", "flow", null, null));
            foreach (var (from, to, @event) in definition.Transitions)
            {
                var key = GraphCounters.SagaTransition(saga.Saga, from, to, @event);
                links.Add(new GraphLink($"state:{saga.Saga}:{from}", $"state:{saga.Saga}:{to}", "transition", @event, c => c[key]));
            }
        }

        return new GraphShape(nodes.Values.ToList(), links);
    }

    /// <summary>A routing table's destinations with their keys, from its description.</summary>
    static IEnumerable<(string Destination, string Label)> Destinations(IReplaceableRoutingTable table)
    {
        var description = JsonSerializer.SerializeToElement(table.Describe(), SagaInspection.Json);
        if (description.TryGetProperty("keys", out var keys) && keys.ValueKind == JsonValueKind.Object)
        {
            foreach (var key in keys.EnumerateObject())
                yield return (key.Value.GetString() ?? "", key.Name);
        }

        if (description.TryGetProperty("predicates", out var predicates) && predicates.ValueKind == JsonValueKind.Array)
        {
            foreach (var predicate in predicates.EnumerateArray())
                yield return (predicate.GetProperty("destination").GetString() ?? "", predicate.GetProperty("clause").GetString() ?? "");
        }

        if (description.TryGetProperty("otherwise", out var otherwise) && otherwise.ValueKind == JsonValueKind.String)
            yield return (otherwise.GetString()!, "otherwise");
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Graph sample failed")]
    static partial void LogSampleFailed(ILogger logger, Exception exception);

    /// <summary>The last samples of one node, oldest first.</summary>
    sealed class Ring(int capacity)
    {
        readonly long[] _values = new long[capacity];
        int _next;
        int _count;

        public void Add(long value)
        {
            lock (_values)
            {
                _values[_next] = value;
                _next = (_next + 1) % _values.Length;
                _count = Math.Min(_count + 1, _values.Length);
            }
        }

        public long[] Values()
        {
            lock (_values)
            {
                var result = new long[_count];
                for (var i = 0; i < _count; i++)
                    result[i] = _values[(_next - _count + i + _values.Length) % _values.Length];
                return result;
            }
        }
    }
}

/// <summary>The graph for the control bus and the dashboard.</summary>
sealed class GraphCommands(GraphMonitor monitor, IConfiguration configuration) : IControlHandler<ShowGraph>
{
    public async Task<ControlResult> HandleAsync(ShowGraph command, CancellationToken cancellationToken)
    {
        var shape = monitor.Shape;
        var instances = await monitor.InstancesAsync(cancellationToken).ConfigureAwait(false);
        var interval = Math.Clamp(configuration.GetValue(OperationsOverview.IntervalSetting, 5), 1, 3600);
        var nodes = shape.Nodes.Select(node =>
        {
            var count = monitor.Count(node, instances);
            var history = monitor.History(node.Id);
            var rate = history.Count == 0 ? 0 : Math.Max(0, count - history[^1]) / (double)interval;
            if (history.Count >= 2 && count == history[^1])
                rate = Math.Max(0, history[^1] - history[^2]) / (double)interval;
            return new
            {
                id = node.Id,
                kind = node.Kind,
                label = node.Label,
                group = node.Group,
                queue = node.Queue,
                count,
                errors = monitor.Errors(node),
                rate = Math.Round(rate, 2),
                history,
            };
        }).ToList();
        var links = shape.Links.Select(link => new
        {
            source = link.Source,
            target = link.Target,
            kind = link.Kind,
            label = link.Label,
            count = link.Count is null ? (long?)null : monitor.LinkCount(link),
        }).ToList();
        return ControlResult.Ok($"{nodes.Count} node(s), {links.Count} link(s); counts since this host started, history every {interval} s",
            new { nodes, links, intervalSeconds = interval });
    }
}
