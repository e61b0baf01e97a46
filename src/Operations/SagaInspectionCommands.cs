namespace Integration.Operations;

/// <summary><c>sagas.list</c> (Viewer): saga instances by saga, state and age, oldest in their state first.</summary>
/// <param name="Target">The saga's name (as registered with <c>AddSaga</c>); null: every saga.</param>
/// <param name="State">Only instances in this state.</param>
/// <param name="OlderThanMinutes">Only instances in their state for at least this long.</param>
/// <param name="Stuck">Only instances flagged stuck (<c>Integration:Operations:Sagas:StuckAfterMinutes</c> in a state that is not terminal).</param>
/// <param name="Take">How many.</param>
public sealed record ListSagaInstances(string? Target = null, string? State = null, double? OlderThanMinutes = null, bool Stuck = false, int Take = 50);

/// <summary><c>saga.show</c> (Viewer): one instance with its state, timeline (oldest first) and pending timeouts.</summary>
/// <param name="Target">The saga's name.</param>
/// <param name="CorrelationId">The instance.</param>
public sealed record ShowSagaInstance(string Target, string CorrelationId);

/// <summary><c>saga.timeout.fire</c> (Operator): deliver a pending timeout of the instance now.</summary>
/// <param name="Target">The saga's name.</param>
/// <param name="CorrelationId">The instance.</param>
/// <param name="TokenId">The timeout's scheduling token; needed only when the instance has several pending.</param>
public sealed record FireSagaTimeout(string Target, string CorrelationId, string? TokenId = null);

/// <summary><c>saga.timeout.cancel</c> (Operator): cancel a pending timeout of the instance.</summary>
/// <param name="Target">The saga's name.</param>
/// <param name="CorrelationId">The instance.</param>
/// <param name="TokenId">The timeout's scheduling token; needed only when the instance has several pending.</param>
public sealed record CancelSagaTimeout(string Target, string CorrelationId, string? TokenId = null);

/// <summary><c>saga.finalize</c> (Operator): move the instance to its machine's final state and cancel its pending timeouts.</summary>
/// <param name="Target">The saga's name.</param>
/// <param name="CorrelationId">The instance.</param>
/// <param name="Reason">Why (kept in the timeline).</param>
public sealed record FinalizeSaga(string Target, string CorrelationId, string? Reason = null);

/// <summary>Saga inspection and repair through the control bus.</summary>
sealed class SagaInspectionCommands(SagaInspection inspection) :
    IControlHandler<ListSagaInstances>, IControlHandler<ShowSagaInstance>, IControlHandler<FireSagaTimeout>, IControlHandler<CancelSagaTimeout>,
    IControlHandler<FinalizeSaga>
{
    public async Task<ControlResult> HandleAsync(ListSagaInstances command, CancellationToken cancellationToken)
    {
        if (command.Target is { } saga && inspection.Find(saga) is null)
            return ControlResult.NotFound($"No saga '{saga}'; sagas: {inspection.Known}");
        if (command.OlderThanMinutes is < 0)
            return ControlResult.Invalid("sagas.list: argument 'olderThanMinutes' must not be negative");
        var instances = await inspection.ListAsync(command, cancellationToken).ConfigureAwait(false);
        return ControlResult.Ok($"{instances.Count} saga instance(s), oldest in their state first", instances);
    }

    public async Task<ControlResult> HandleAsync(ShowSagaInstance command, CancellationToken cancellationToken)
    {
        if (Resolve(command.Target, command.CorrelationId, null, out var saga, out var id, out _) is { } refused)
            return refused;
        return await inspection.ShowAsync(saga, id, cancellationToken).ConfigureAwait(false) is { } instance
            ? ControlResult.Ok($"Saga '{saga.Saga}' {id:D}", instance)
            : ControlResult.NotFound($"Saga '{saga.Saga}' has no instance {id:D}");
    }

    public async Task<ControlResult> HandleAsync(FireSagaTimeout command, CancellationToken cancellationToken) =>
        Resolve(command.Target, command.CorrelationId, command.TokenId, out var saga, out var id, out var token) is { } refused
            ? refused
            : await inspection.FireAsync(saga, id, token, cancellationToken).ConfigureAwait(false);

    public async Task<ControlResult> HandleAsync(CancelSagaTimeout command, CancellationToken cancellationToken) =>
        Resolve(command.Target, command.CorrelationId, command.TokenId, out var saga, out var id, out var token) is { } refused
            ? refused
            : await inspection.CancelAsync(saga, id, token, cancellationToken).ConfigureAwait(false);

    public async Task<ControlResult> HandleAsync(FinalizeSaga command, CancellationToken cancellationToken) =>
        Resolve(command.Target, command.CorrelationId, null, out var saga, out var id, out _) is { } refused
            ? refused
            : await inspection.FinalizeAsync(saga, id, command.Reason, cancellationToken).ConfigureAwait(false);

    ControlResult? Resolve(string name, string correlationId, string? tokenId, out SagaInspector saga, out Guid id, out Guid? token)
    {
        saga = null!;
        id = default;
        token = null;
        if (inspection.Find(name) is not { } found)
            return ControlResult.NotFound($"No saga '{name}'; sagas: {inspection.Known}");
        saga = found;
        if (!Guid.TryParse(correlationId, out id))
            return ControlResult.Invalid($"'{correlationId}' is not a correlation id (a GUID)");
        if (tokenId is not null)
        {
            if (!Guid.TryParse(tokenId, out var parsed))
                return ControlResult.Invalid($"'{tokenId}' is not a scheduling token id (a GUID)");
            token = parsed;
        }

        return null;
    }
}
