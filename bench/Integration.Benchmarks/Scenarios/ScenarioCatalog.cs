using Integration.Benchmarks.Harness;

namespace Integration.Benchmarks.Scenarios;

/// <summary>Every scenario, in the order <c>./bench.sh</c> runs them.</summary>
public static class ScenarioCatalog
{
    public static IReadOnlyList<IScenario> All { get; } =
    [
        new ThroughputBaselineScenario(),
        new RouteScenario(),
        new OutboxScenario(),
        new InboxScenario(),
        new SagaScenario(),
        new RequestResponseScenario(),
        new BatchingScenario(),
    ];
}
