using NUnit.Framework;

namespace Integration.Fuzz;

/// <summary>
/// Every corpus file through every target (a corpus file of one format is a fine malformed input for the others): the
/// fuzzers' findings, once fixed, stay fixed on every <c>dotnet test</c>.
/// </summary>
[TestFixture]
public sealed class Replay_Specs
{
    static string CorpusRoot => Path.Combine(TestContext.CurrentContext.TestDirectory, "corpus");

    static IEnumerable<TestCaseData> Targets() => FuzzTargets.All.Select(t => new TestCaseData(t.Name).SetName($"Should_hold_its_contract_for_every_corpus_file({t.Name})"));

    [TestCaseSource(nameof(Targets))]
    public void Should_hold_its_contract_for_every_corpus_file(string name)
    {
        var target = FuzzTargets.Get(name);
        var files = Directory.GetFiles(CorpusRoot, "*", SearchOption.AllDirectories);
        Assert.That(Directory.GetFiles(Path.Combine(CorpusRoot, name)), Is.Not.Empty, $"corpus/{name} has no seed");
        var findings = new List<string>();
        foreach (var file in files)
        {
            try
            {
                target.Execute(File.ReadAllBytes(file));
            }
            catch (FuzzFinding finding)
            {
                findings.Add($"{Path.GetRelativePath(CorpusRoot, file)}: {finding.Message}");
            }
        }

        Assert.That(findings, Is.Empty, $"{findings.Count} of {files.Length} corpus files break the {name} target's contract");
    }

    [Test]
    public void Should_have_a_corpus_folder_for_every_target_and_no_other() =>
        Assert.That(Directory.GetDirectories(CorpusRoot).Select(Path.GetFileName).Order(), Is.EqualTo(FuzzTargets.All.Select(t => t.Name).Order()));
}
