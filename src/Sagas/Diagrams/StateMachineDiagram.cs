using System.Text;
using MassTransit;
using MassTransit.SagaStateMachine;

namespace Integration.Sagas.Diagrams;

/// <summary>Draws a state machine as a Mermaid <c>stateDiagram-v2</c> from its definition (visiting its states, events and activities).</summary>
public static class StateMachineDiagram
{
    /// <summary>
    /// The machine's transitions, one line per <c>state --&gt; state : event</c> (an event handled without a
    /// transition is a self-transition), sorted so the text changes only when the machine does.
    /// </summary>
    public static string ToMermaid<TSaga>(StateMachine<TSaga> machine, string? title = null)
        where TSaga : class, SagaStateMachineInstance
    {
        ArgumentNullException.ThrowIfNull(machine);
        var visitor = new TransitionVisitor<TSaga>();
        machine.Accept(visitor);

        var text = new StringBuilder();
        if (title is not null)
            text.Append("---\ntitle: ").Append(title).Append("\n---\n");
        text.Append("stateDiagram-v2\n");
        text.Append("    [*] --> ").Append(Id(machine.Initial.Name)).Append('\n');
        foreach (var line in visitor.Transitions.Select(t => $"    {Id(t.From)} --> {Id(t.To)} : {t.Event}").Distinct().Order(StringComparer.Ordinal))
            text.Append(line).Append('\n');
        text.Append("    ").Append(Id(machine.Final.Name)).Append(" --> [*]\n");
        return text.ToString();
    }

    /// <summary>
    /// The machine's transitions as data: each <c>(From, To, Event)</c> its definition declares (an event handled
    /// without a transition is a self-transition), distinct and sorted; what <see cref="ToMermaid{TSaga}"/> draws.
    /// </summary>
    public static IReadOnlyList<(string From, string To, string Event)> Transitions<TSaga>(StateMachine<TSaga> machine)
        where TSaga : class, SagaStateMachineInstance
    {
        ArgumentNullException.ThrowIfNull(machine);
        var visitor = new TransitionVisitor<TSaga>();
        machine.Accept(visitor);
        return visitor.Transitions.Distinct().OrderBy(t => t.From, StringComparer.Ordinal).ThenBy(t => t.Event, StringComparer.Ordinal)
            .ThenBy(t => t.To, StringComparer.Ordinal).ToList();
    }

    static string Id(string name) => new(name.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '_').ToArray());

    sealed class TransitionVisitor<TSaga> : StateMachineVisitor
        where TSaga : class, SagaStateMachineInstance
    {
        State? _state;
        Event? _event;
        bool _handled;
        readonly List<string> _targets = [];

        public List<(string From, string To, string Event)> Transitions { get; } = [];

        public void Visit(State state, Action<State> next)
        {
            Flush();
            _state = state;
            next(state);
            Flush();
            _state = null;
        }

        // A state visits each event and then, separately, that event's behavior: the pair is complete at the next event or at the state's end.
        public void Visit(Event @event, Action<Event> next) => VisitEvent(@event, () => next(@event));

        public void Visit<TMessage>(Event<TMessage> @event, Action<Event<TMessage>> next)
            where TMessage : class =>
            VisitEvent(@event, () => next(@event));

        void VisitEvent(Event @event, Action next)
        {
            Flush();
            _event = @event;
            next();
        }

        void Flush()
        {
            if (_state is not null && _event is not null && _handled && !IsStateEvent(_event))
            {
                foreach (var target in _targets.Count == 0 ? [_state.Name] : _targets.Distinct().ToList())
                    Transitions.Add((_state.Name, target, _event.Name));
            }

            _event = null;
            _handled = false;
            _targets.Clear();
        }

        // Enter/leave events of states ("Counting.Enter") describe the states, not transitions; a schedule's
        // "ApprovalTimeout.AnyReceived" is MassTransit's own handler in every state (it clears the token), not the machine's.
        // Other dotted names are events the machine receives: a schedule's ("ApprovalTimeout.Received"), a request's ("Check.Completed").
        static bool IsStateEvent(Event @event) =>
            @event.Name.EndsWith(".Enter", StringComparison.Ordinal) || @event.Name.EndsWith(".Leave", StringComparison.Ordinal)
            || @event.Name.EndsWith(".BeforeEnter", StringComparison.Ordinal) || @event.Name.EndsWith(".AfterLeave", StringComparison.Ordinal)
            || @event.Name.EndsWith(".AnyReceived", StringComparison.Ordinal);

        public void Visit(IStateMachineActivity activity) => Visit(activity, _ => { });

        public void Visit(IStateMachineActivity activity, Action<IStateMachineActivity> next)
        {
            if (_event is not null)
                _handled = true;
            if (activity is TransitionActivity<TSaga> transition && _event is not null)
                _targets.Add(transition.ToState.Name);
            next(activity);
        }

        public void Visit<T>(IBehavior<T> behavior)
            where T : class, SagaStateMachineInstance =>
            Visit(behavior, _ => { });

        public void Visit<T>(IBehavior<T> behavior, Action<IBehavior<T>> next)
            where T : class, SagaStateMachineInstance =>
            next(behavior);

        public void Visit<T, TMessage>(IBehavior<T, TMessage> behavior)
            where T : class, SagaStateMachineInstance
            where TMessage : class =>
            Visit(behavior, _ => { });

        public void Visit<T, TMessage>(IBehavior<T, TMessage> behavior, Action<IBehavior<T, TMessage>> next)
            where T : class, SagaStateMachineInstance
            where TMessage : class =>
            next(behavior);
    }
}
