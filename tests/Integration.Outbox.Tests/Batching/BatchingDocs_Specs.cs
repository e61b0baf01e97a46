using NUnit.Framework;

namespace Integration.Outbox.Tests.Batching;

/// <summary>docs/patterns/batching.md shows code that compiles: the handler of these specs and the sample's registration, as they are.</summary>
[TestFixture]
public sealed class BatchingDocs_Specs
{
    static string Repository([System.Runtime.CompilerServices.CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", "..", ".."));

    static string Read(string path) => File.ReadAllText(Path.Combine(Repository(), path)).ReplaceLineEndings("\n");

    [Test]
    public void When_the_page_quotes_the_handler_should_quote_it_unchanged()
    {
        var source = Read("tests/Integration.Outbox.Tests/Batching/BatchHost.cs");
        var start = source.IndexOf("public sealed class ChargeBatchHandler", StringComparison.Ordinal);
        var end = source.IndexOf("/// <summary>The sizes of the batches", StringComparison.Ordinal);
        Assert.That(Read("docs/patterns/batching.md"), Does.Contain(source[start..end].TrimEnd()), "paste ChargeBatchHandler into docs/patterns/batching.md again");
    }

    [Test]
    public void When_the_page_quotes_the_sample_registration_should_quote_it_unchanged()
    {
        var source = Read("src/Host/Inventory/InventoryFeature.cs");
        var start = source.IndexOf("        bus.AddIntegrationBatch<UpdateInventory", StringComparison.Ordinal);
        var end = source.IndexOf("isDefault: true));", start, StringComparison.Ordinal) + "isDefault: true));".Length;
        var quoted = string.Join("\n", source[start..end].Split('\n').Select(l => l.StartsWith("        ", StringComparison.Ordinal) ? l[8..] : l));
        Assert.That(Read("docs/patterns/batching.md"), Does.Contain(quoted), "paste the InventoryFeature registration into docs/patterns/batching.md again");
    }
}
