using System.Globalization;
using System.Net;
using System.Text;

namespace Integration.Benchmarks.Harness;

/// <summary>
/// An SVG of the rows that put ours beside a peer (throughput and latency, one panel each, bars scaled per panel):
/// every result whose note says "ours vs peer" or "like for like", ours in blue, the peer in grey.
/// </summary>
public static class Chart
{
    public static bool IsComparison(Result result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return result.BaselineValue is not null && result.Note is { } note &&
               (note.Contains("ours vs peer", StringComparison.Ordinal) || note.Contains("like for like", StringComparison.Ordinal));
    }

    public static string Svg(IEnumerable<Result> results, string title)
    {
        ArgumentNullException.ThrowIfNull(results);
        var rows = results.Where(IsComparison).ToList();
        var c = CultureInfo.InvariantCulture;
        const int width = 900, rowHeight = 64, top = 56, label = 330, barMax = 440;
        var height = top + rows.Count * rowHeight + 40;
        var svg = new StringBuilder();
        svg.AppendLine(c, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">");
        svg.AppendLine(c, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        svg.AppendLine(c, $"<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{E(title)}</text>");
        svg.AppendLine(c, $"<rect x=\"{label}\" y=\"32\" width=\"12\" height=\"12\" fill=\"#2b6cb0\"/><text x=\"{label + 16}\" y=\"42\">ours (this framework)</text>");
        svg.AppendLine(c, $"<rect x=\"{label + 180}\" y=\"32\" width=\"12\" height=\"12\" fill=\"#a0aec0\"/><text x=\"{label + 196}\" y=\"42\">peer / baseline named in the row</text>");
        for (var i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            var y = top + i * rowHeight;
            var peer = r.BaselineValue!.Value;
            var max = Math.Max(Math.Max(r.Value, peer), 1e-9);
            var better = r.Ratio is { } ratio ? ratio.ToString("0.00", c) + (r.Unit == "ms" ? " (lower is better)" : "") : "";
            svg.AppendLine(c, $"<text x=\"10\" y=\"{y + 16}\" font-weight=\"bold\">{E(r.Scenario)}: {E(r.Metric)}</text>");
            svg.AppendLine(c, $"<text x=\"10\" y=\"{y + 32}\">{E(r.Case)}</text>");
            svg.AppendLine(c, $"<text x=\"10\" y=\"{y + 48}\" fill=\"#555\">vs {E(r.Baseline ?? "")}; ratio {E(better)}</text>");
            Bar(svg, label, y + 6, r.Value / max * barMax, "#2b6cb0", $"{Format(r.Value)} {r.Unit}");
            Bar(svg, label, y + 28, peer / max * barMax, "#a0aec0", $"{Format(peer)} {r.Unit}");
        }

        svg.AppendLine(c, $"<text x=\"10\" y=\"{height - 12}\" fill=\"#555\">Measured in one ./bench.sh run on the same machine, broker and database; bars are scaled per row.</text>");
        svg.AppendLine("</svg>");
        return svg.ToString();

        static void Bar(StringBuilder svg, int x, int y, double length, string colour, string text)
        {
            var c = CultureInfo.InvariantCulture;
            svg.AppendLine(c, $"<rect x=\"{x}\" y=\"{y}\" width=\"{Math.Max(1, length):0.0}\" height=\"18\" fill=\"{colour}\"/>");
            svg.AppendLine(c, $"<text x=\"{x + Math.Max(1, length) + 6:0.0}\" y=\"{y + 13}\">{E(text)}</text>");
        }

        static string Format(double v) => v >= 100 ? v.ToString("#,0", CultureInfo.InvariantCulture) : v.ToString("0.00", CultureInfo.InvariantCulture);
        static string E(string text) => WebUtility.HtmlEncode(text);
    }
}
