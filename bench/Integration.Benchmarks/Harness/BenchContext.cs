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

    /// <summary>
    /// Cases compared with each other, measured in turns: each warms up once, then round after round every case runs once
    /// (A B C, A B C, ...), and each case's median is returned in the order given. A slow drift of the shared machine
    /// (a checkpoint, autovacuum, the page cache) then falls on every case alike instead of on whichever ran last.
    /// </summary>
    public async Task<double[]> InTurnsAsync(params Func<int, Task<double>>[] cases)
    {
        ArgumentNullException.ThrowIfNull(cases);
        foreach (var measure in cases)
            await measure(Math.Max(1, Settings.Count / 10)).ConfigureAwait(false);
        var values = cases.Select(_ => new List<double>()).ToArray();
        for (var i = 0; i < Repeat; i++)
        {
            for (var c = 0; c < cases.Length; c++)
                values[c].Add(await cases[c](Settings.Count).ConfigureAwait(false));
        }

        return values.Select(v =>
        {
            v.Sort();
            return v[v.Count / 2];
        }).ToArray();
    }

    /// <summary>Runs <paramref name="measure"/> once to warm up, then <see cref="Repeat"/> times, and returns the median.</summary>
    public async Task<double> MedianAsync(Func<int, Task<double>> measure)
    {
        ArgumentNullException.ThrowIfNull(measure);
        return (await InTurnsAsync(measure).ConfigureAwait(false))[0];
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
