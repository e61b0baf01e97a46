using Integration.Testing;

namespace Integration.Benchmarks.Harness;

/// <summary>What every scenario gets: the settings, the real services, and baselines measured once in this run.</summary>
public sealed class BenchContext(BenchSettings settings, IntegrationInfrastructure infrastructure)
{
    readonly Dictionary<string, Task<double>> _baselines = new(StringComparer.Ordinal);

    public BenchSettings Settings { get; } = settings;
    public IntegrationInfrastructure Infrastructure { get; } = infrastructure;

    /// <summary>How many measured repetitions per case (the median is reported); the first run of each case warms up.</summary>
    public int Repeat { get; init; } = 3;

    /// <summary>A baseline figure measured once per run and shared by every scenario that compares against it.</summary>
    public Task<double> Baseline(string name, Func<Task<double>> measure)
    {
        ArgumentNullException.ThrowIfNull(measure);
        lock (_baselines)
        {
            if (!_baselines.TryGetValue(name, out var task))
                _baselines[name] = task = measure();
            return task;
        }
    }

    /// <summary>Runs <paramref name="measure"/> once to warm up, then <see cref="Repeat"/> times, and returns the median.</summary>
    public async Task<double> MedianAsync(Func<int, Task<double>> measure)
    {
        ArgumentNullException.ThrowIfNull(measure);
        await measure(Math.Max(1, Settings.Count / 10)).ConfigureAwait(false);
        var values = new List<double>();
        for (var i = 0; i < Repeat; i++)
            values.Add(await measure(Settings.Count).ConfigureAwait(false));
        values.Sort();
        return values[values.Count / 2];
    }
}

/// <summary>One benchmark scenario with its baselines.</summary>
public interface IScenario
{
    /// <summary>Name used on the command line.</summary>
    string Name { get; }

    /// <summary>What it measures, printed before it runs.</summary>
    string Description { get; }

    Task<IReadOnlyList<Result>> RunAsync(BenchContext context);
}
