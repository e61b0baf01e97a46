using System.Text.RegularExpressions;
using Integration.Sagas.Scheduling;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Scheduling;

/// <summary>Our EF Core mapping of the Quartz tables must match the schema Quartz itself would create.</summary>
[TestFixture]
public sealed partial class QuartzSchema_Specs
{
    [Test]
    public void When_compared_with_quartz_own_postgres_script_should_have_the_same_tables_columns_types_and_nullability()
    {
        var assembly = typeof(Quartz.IJob).Assembly;
        using var stream = assembly.GetManifestResourceStream("Quartz.Impl.AdoJobStore.Schema.create_postgres.sql")
            ?? throw new AssertionException("Quartz no longer embeds create_postgres.sql; compare SchedulerModelBuilderExtensions with its schema by hand");
        var script = new StreamReader(stream).ReadToEnd();

        var expected = new SortedSet<string>(StringComparer.Ordinal);
        foreach (Match table in TableRegex().Matches(script))
        {
            foreach (var line in table.Groups["body"].Value.Split('\n').Select(l => l.Trim().TrimEnd(',')))
            {
                var column = ColumnRegex().Match(line);
                if (!column.Success || column.Groups["name"].Value is "primary" or "foreign")
                    continue;
                var nullable = !line.Contains("not null", StringComparison.OrdinalIgnoreCase);
                expected.Add($"{table.Groups["table"].Value}.{column.Groups["name"].Value} {column.Groups["type"].Value} {(nullable ? "null" : "not null")}");
            }
        }

        var actual = new SortedSet<string>(SchedulerModelBuilderExtensions.Definition.SelectMany(t => t.Columns.Select(c =>
            $"{t.Table}.{c.Column} {c.StoreType} {(c.Nullable ? "null" : "not null")}")), StringComparer.Ordinal);

        Assert.That(expected, Is.Not.Empty, "could not read the script");
        Assert.That(actual.Except(expected), Is.Empty, "columns we map that Quartz does not have");
        Assert.That(expected.Except(actual), Is.Empty, "columns Quartz needs that we do not map");
    }

    [GeneratedRegex(@"CREATE TABLE IF NOT EXISTS \{0\}(?<table>\w+) \((?<body>.*?)\n\);", RegexOptions.Singleline)]
    private static partial Regex TableRegex();

    [GeneratedRegex(@"^(?<name>\w+) (?<type>bool|text|bytea|bigint|integer|smallint|numeric|varchar\(\d+\))")]
    private static partial Regex ColumnRegex();
}
