using MassTransit;
using MassTransit.Courier.Contracts;

namespace Integration.Patterns.RoutingSlips;

/// <summary>
/// The itineraries declared with <see cref="RoutingSlipRegistrationExtensions.AddIntegrationItineraries"/>. Declaring a
/// step registers its activity with MassTransit (once per activity type, on queues named by the kebab-case formatter);
/// <c>ConfigureIntegrationRoutes</c> creates its execute and compensate endpoints (<c>cfg.ConfigureEndpoints(context)</c> leaves them out).
/// </summary>
internal sealed class ItineraryCatalog : IItinerariesBuilder
{
    /// <summary>Queue of the built-in activity that revises itineraries for detours.</summary>
    public const string DetourQueue = "integration-itinerary-detour_execute";

    readonly IBusRegistrationConfigurator _bus;
    readonly List<ItineraryDefinition> _itineraries = [];
    readonly Dictionary<Type, (string Execute, string? Compensate)> _registered = [];

    internal ItineraryCatalog(IBusRegistrationConfigurator bus) => _bus = bus;

    /// <summary>Every itinerary, in declaration order.</summary>
    public IReadOnlyList<ItineraryDefinition> Itineraries => _itineraries;

    /// <summary>An itinerary by name, or null.</summary>
    public ItineraryDefinition? Find(string name) => _itineraries.FirstOrDefault(i => string.Equals(i.Name, name, StringComparison.Ordinal));

    /// <inheritdoc />
    public IItinerariesBuilder Itinerary(string name, Action<IItineraryConfigurator> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var configurator = new Configurator(this, name);
        configure(configurator);
        _itineraries.Add(new ItineraryDefinition(name, configurator.Steps, configurator.WireTaps));
        return this;
    }

    /// <summary>Every mistake in every itinerary; empty when all are right.</summary>
    public IReadOnlyList<string> Validate()
    {
        var failures = _itineraries.SelectMany(i => i.Validate()).ToList();
        failures.AddRange(_itineraries.GroupBy(i => i.Name, StringComparer.Ordinal).Where(g => g.Count() > 1)
            .Select(g => $"Itinerary '{g.Key}' is declared {g.Count()} times"));

        // MassTransit keys an activity's endpoint settings by its arguments (and log) type: two activities sharing one
        // would silently end up on the same queue, so each needs types of its own.
        var activities = _itineraries.SelectMany(i => i.Activities().Select(a => (Itinerary: i.Name, Activity: a))).ToList();
        foreach (var shared in activities.GroupBy(a => a.Activity.ArgumentsType).Where(g => g.Select(a => a.Activity.ActivityType).Distinct().Count() > 1))
            failures.Add($"Itinerary '{shared.First().Itinerary}': activities {string.Join(" and ", shared.Select(a => a.Activity.ActivityType.Name).Distinct())} share the arguments type {shared.Key.Name}; give each activity its own arguments type (MassTransit keys activity endpoints by it)");
        foreach (var shared in activities.Where(a => a.Activity.LogType is not null).GroupBy(a => a.Activity.LogType!).Where(g => g.Select(a => a.Activity.ActivityType).Distinct().Count() > 1))
            failures.Add($"Itinerary '{shared.First().Itinerary}': activities {string.Join(" and ", shared.Select(a => a.Activity.ActivityType.Name).Distinct())} share the log type {shared.Key.Name}; give each activity its own log type (MassTransit keys compensate endpoints by it)");
        return failures;
    }

    /// <summary>
    /// Every activity the itineraries registered with MassTransit (the detour activity included) and the queues of its
    /// endpoints, which <c>ConfigureIntegrationRoutes</c> creates (the activities are excluded from <c>ConfigureEndpoints</c>).
    /// </summary>
    internal IEnumerable<(Type Activity, string Execute, string? Compensate)> ActivityEndpoints =>
        _registered.Select(r => (r.Key, r.Value.Execute, r.Value.Compensate));

    void RegisterOnce(Type activity, string execute, string? compensate, Action register)
    {
        if (_registered.TryAdd(activity, (execute, compensate)))
            register();
    }

    sealed class Configurator(ItineraryCatalog catalog, string itinerary) : IItineraryConfigurator
    {
        public List<ItineraryStep> Steps { get; } = [];
        public List<ItineraryWireTap> WireTaps { get; } = [];
        public string Itinerary { get; } = itinerary;

        public IItineraryConfigurator Activity<TActivity, TArguments, TLog>(object? arguments = null)
            where TActivity : class, IActivity<TArguments, TLog>
            where TArguments : class
            where TLog : class
        {
            var formatter = KebabCaseEndpointNameFormatter.Instance;
            var execute = formatter.ExecuteActivity<TActivity, TArguments>();
            var compensate = formatter.CompensateActivity<TActivity, TLog>();
            catalog.RegisterOnce(typeof(TActivity), execute, compensate, () => catalog._bus.AddActivity<TActivity, TArguments, TLog>().ExcludeFromConfigureEndpoints());
            Steps.Add(new ActivityStep(StepName(typeof(TActivity)), typeof(TActivity), typeof(TArguments), typeof(TLog), execute, compensate, arguments));
            return this;
        }

        public IItineraryConfigurator ExecuteActivity<TActivity, TArguments>(object? arguments = null)
            where TActivity : class, IExecuteActivity<TArguments>
            where TArguments : class
        {
            var execute = KebabCaseEndpointNameFormatter.Instance.ExecuteActivity<TActivity, TArguments>();
            catalog.RegisterOnce(typeof(TActivity), execute, null, () => catalog._bus.AddExecuteActivity<TActivity, TArguments>().ExcludeFromConfigureEndpoints());
            Steps.Add(new ActivityStep(StepName(typeof(TActivity)), typeof(TActivity), typeof(TArguments), null, execute, null, arguments));
            return this;
        }

        public IItineraryConfigurator Detour(string name, Action<IItineraryConfigurator> steps, bool enabled = false)
        {
            ArgumentNullException.ThrowIfNull(steps);
            var detour = new Configurator(catalog, Itinerary);
            steps(detour);
            catalog.RegisterOnce(typeof(DetourActivity), DetourQueue, null, () => catalog._bus.AddExecuteActivity<DetourActivity, DetourArguments>().ExcludeFromConfigureEndpoints());
            Steps.Add(new DetourStep(name, detour.Steps, enabled));
            if (detour.WireTaps.Count > 0)
                WireTaps.AddRange(detour.WireTaps);
            return this;
        }

        public IItineraryConfigurator WireTap(string queue, RoutingSlipEvents events = RoutingSlipEvents.All)
        {
            WireTaps.Add(new ItineraryWireTap(queue, events));
            return this;
        }

        static string StepName(Type activity) =>
            activity.Name.EndsWith("Activity", StringComparison.Ordinal) && activity.Name.Length > "Activity".Length
                ? activity.Name[..^"Activity".Length]
                : activity.Name;
    }
}
