using NUnit.Framework;

namespace Integration.Host.Tests;

/// <summary>The docs show code that compiles: docs/host.md quotes the files the integration-worker template generates, as they are.</summary>
[TestFixture]
public sealed class Docs_Specs
{
    static string Repository([System.Runtime.CompilerServices.CallerFilePath] string here = "") =>
        Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", ".."));

    [TestCase("src/Templates/content/integration-worker/Acme.Worker/Program.cs")]
    [TestCase("src/Templates/content/integration-worker/Acme.Worker/appsettings.json")]
    public void When_the_host_guide_quotes_a_sample_file_should_quote_it_whole_and_unchanged(string file)
    {
        var guide = File.ReadAllText(Path.Combine(Repository(), "docs", "host.md")).ReplaceLineEndings("\n");
        var source = File.ReadAllText(Path.Combine(Repository(), file)).ReplaceLineEndings("\n").TrimEnd();

        Assert.That(guide, Does.Contain(source), $"docs/host.md no longer shows {file} as it is: paste the file again");
    }
}
