using System.Text.RegularExpressions;
using Integration.Host.Fulfillment;
using Integration.Sagas.Diagrams;
using Microsoft.Extensions.Options;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>
/// The committed diagrams are generated from the state machine's definition; a machine change without a refreshed
/// diagram fails here. Refresh with <c>UPDATE_DIAGRAMS=1 dotnet test tests/Integration.Host.Tests --filter StateMachineDiagram</c>.
/// </summary>
[TestFixture]
public sealed partial class StateMachineDiagram_Specs
{
    const string Name = "order-fulfillment";

    static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (Directory.Exists(Path.Combine(directory.FullName, "docs")) && Directory.Exists(Path.Combine(directory.FullName, "src")))
                return directory.FullName;
        }

        throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }

    static string Generate() =>
        StateMachineDiagram.ToMermaid(new OrderFulfillmentStateMachine(Options.Create(new FulfillmentOptions())), "Order fulfillment (generated from OrderFulfillmentStateMachine)");

    static bool Update => Environment.GetEnvironmentVariable("UPDATE_DIAGRAMS") == "1";

    const string Refresh = "the committed diagram is stale: run `UPDATE_DIAGRAMS=1 dotnet test tests/Integration.Host.Tests --filter StateMachineDiagram` and commit docs/sagas";

    [Test]
    public void When_the_machine_is_drawn_should_match_the_committed_mmd_file()
    {
        var path = Path.Combine(RepositoryRoot(), "docs", "sagas", Name + ".mmd");
        var generated = Generate();
        if (Update)
            File.WriteAllText(path, generated);

        Assert.That(File.Exists(path), Is.True, $"{path} is missing: {Refresh}");
        Assert.That(File.ReadAllText(path).ReplaceLineEndings("\n"), Is.EqualTo(generated), Refresh);
    }

    [Test]
    public void When_the_machine_is_drawn_should_match_the_diagram_embedded_in_the_sagas_page()
    {
        var path = Path.Combine(RepositoryRoot(), "docs", "sagas.md");
        var block = $"<!-- diagram:{Name} -->\n```mermaid\n{Generate()}```\n<!-- /diagram:{Name} -->";
        var page = File.Exists(path) ? File.ReadAllText(path).ReplaceLineEndings("\n") : "";
        var pattern = new Regex($"<!-- diagram:{Name} -->.*?<!-- /diagram:{Name} -->", RegexOptions.Singleline);
        if (Update && pattern.IsMatch(page))
        {
            page = pattern.Replace(page, block.Replace("$", "$$", StringComparison.Ordinal));
            File.WriteAllText(path, page);
        }

        Assert.That(page, Does.Contain(block), Refresh);
    }
}
