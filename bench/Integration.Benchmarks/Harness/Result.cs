using System.Globalization;
using System.Text;

namespace Integration.Benchmarks.Harness;

/// <summary>One measured row: a figure and, when it has one, its baseline from the same run.</summary>
public sealed record Result(string Scenario, string Case, string Metric, double Value, string Unit, string? Baseline = null, double? BaselineValue = null, string? Note = null)
{
    /// <summary>Value over baseline for rates; baseline over value for latencies (higher ratio = better, 1.0 = as fast).</summary>
    public double? Ratio => BaselineValue is { } b && b > 0 && Value > 0
        ? (Unit == "ms" ? b / Value : Value / b)
        : null;
}

public static class Report
{
    public static string Markdown(IEnumerable<Result> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var c = CultureInfo.InvariantCulture;
        var builder = new StringBuilder();
        builder.AppendLine("| scenario | case | metric | value | baseline | baseline value | ratio | note |");
        builder.AppendLine("| --- | --- | --- | ---: | --- | ---: | ---: | --- |");
        foreach (var r in results)
        {
            builder.Append(c, $"| {r.Scenario} | {r.Case} | {r.Metric} | {Format(r.Value)} {r.Unit} | {r.Baseline ?? ""} | ");
            builder.Append(r.BaselineValue is { } b ? $"{Format(b)} {r.Unit}" : "");
            builder.Append(" | ");
            builder.Append(r.Ratio is { } ratio ? ratio.ToString("0.00", c) : "");
            builder.Append(c, $" | {r.Note ?? ""} |");
            builder.AppendLine();
        }

        return builder.ToString();

        static string Format(double v) => v >= 100 ? v.ToString("#,0", CultureInfo.InvariantCulture) : v.ToString("0.00", CultureInfo.InvariantCulture);
    }
}
