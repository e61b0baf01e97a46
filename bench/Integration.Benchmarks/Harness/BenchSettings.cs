using System.Globalization;

namespace Integration.Benchmarks.Harness;

/// <summary>Settings of one benchmark run, from the command line: <c>[scenario...] [--count N] [--size BYTES] [--prefetch N] [--concurrency N]</c>.</summary>
public sealed record BenchSettings(IReadOnlyList<string> Scenarios, int Count, int Size, int Prefetch, int Concurrency, int RequestCount, bool Profile = false, string Chart = "bench/results/latest.svg")
{
    public static BenchSettings Parse(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var scenarios = new List<string>();
        var profile = false;
        var chart = "bench/results/latest.svg";
        int count = 20_000, size = 256, prefetch = 64, concurrency = 64, requests = 2_000;
        for (var i = 0; i < args.Length; i++)
        {
            int Next() => i + 1 < args.Length && int.TryParse(args[++i], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v > 0
                ? v
                : throw new ArgumentException($"{args[i - 1]} needs a positive whole number");
            switch (args[i])
            {
                case "--count": count = Next(); break;
                case "--size": size = Next(); break;
                case "--prefetch": prefetch = Next(); break;
                case "--concurrency": concurrency = Next(); break;
                case "--requests": requests = Next(); break;
                case "--profile": profile = true; break;
                case "--chart":
                    chart = i + 1 < args.Length ? args[++i] : throw new ArgumentException("--chart needs a file path");
                    break;
                case "--help" or "-h":
                    throw new ArgumentException("usage");
                default:
                    if (args[i].StartsWith('-'))
                        throw new ArgumentException($"unknown option {args[i]}");
                    scenarios.Add(args[i]);
                    break;
            }
        }

        return new BenchSettings(scenarios, count, size, prefetch, concurrency, requests, profile, chart);
    }
}
