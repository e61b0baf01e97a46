using Integration.Sagas.Diagrams;
using Integration.Sagas.Tests.Postgres;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Diagrams;

[TestFixture]
public sealed class StateMachineDiagram_Specs
{
    [Test]
    public void When_a_machine_is_drawn_should_list_its_transitions_by_event()
    {
        var mermaid = StateMachineDiagram.ToMermaid(new CounterMachine());
        TestContext.Out.WriteLine(mermaid);

        Assert.That(mermaid, Does.StartWith("stateDiagram-v2\n    [*] --> Initial\n"));
        Assert.That(mermaid, Does.Contain("Initial --> Counting : Started"));
        Assert.That(mermaid, Does.Contain("Counting --> Final : Stopped"));
        Assert.That(mermaid, Does.Contain("Counting --> Counting : Incremented"));
        Assert.That(mermaid, Does.EndWith("Final --> [*]\n"));
    }

    [Test]
    public void When_drawn_twice_should_produce_the_same_text()
    {
        Assert.That(StateMachineDiagram.ToMermaid(new CounterMachine()), Is.EqualTo(StateMachineDiagram.ToMermaid(new CounterMachine())));
    }
}
