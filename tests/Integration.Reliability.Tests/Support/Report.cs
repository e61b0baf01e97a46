using System.Text;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Support;

/// <summary>
/// Collects the fault table of a test run and writes it as Markdown to the test output and to a file:
/// <c>$INTEGRATION_RELIABILITY_REPORT</c> when set, else <c>TestResults/reliability/reliability-faults.md</c> (host logs beside it, in <c>hosts/</c>) under the repository root.
/// </summary>
public static class ReliabilityReport
{
    /// <summary>The table's header.</summary>
    public const string Header =
        "| fault | flow | sent | delivered | duplicated effects | lost | sagas final | order violations | redelivered copies | left in _error/_skipped |\n" +
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |";

    static readonly List<FaultReport> Reports = [];

    /// <summary>Adds a scenario's figures.</summary>
    public static void Add(FaultReport report)
    {
        lock (Reports)
            Reports.Add(report);
    }

    /// <summary>The table so far.</summary>
    public static string Table()
    {
        lock (Reports)
        {
            var text = new StringBuilder(Header).Append('\n');
            foreach (var row in Reports.SelectMany(r => r.Rows()))
                text.Append(row).Append('\n');
            return text.ToString();
        }
    }

    /// <summary>Writes the table to the file and the test output; returns the file's path.</summary>
    public static string Write(string mode)
    {
        string body;
        lock (Reports)
        {
            if (Reports.Count == 0)
                return "";
            body = $"# Fault injection ({mode}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores)\n\n{Table()}\n" +
                string.Join("\n\n", Reports.Select(r => r.ToString())) + "\n";
        }

        var path = Environment.GetEnvironmentVariable("INTEGRATION_RELIABILITY_REPORT") is { Length: > 0 } configured
            ? configured
            : Path.Combine(Directory(), "reliability-faults.md");
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, body);
        TestContext.Progress.WriteLine(body);
        TestContext.Progress.WriteLine($"(written to {path})");
        return path;
    }

    /// <summary>Where reports and host logs go: <c>TestResults/reliability</c> under the repository root.</summary>
    public static string Directory() => Path.Combine(RepositoryRoot(), "TestResults", "reliability");

    static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Integration.sln")))
                return directory.FullName;
        }

        return System.IO.Directory.GetCurrentDirectory();
    }
}
