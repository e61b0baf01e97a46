using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>
/// <c>environment</c> (Viewer): what a deployment check needs that the health endpoints do not say — the database
/// migrations applied and pending, and the control keys configured (names and roles; never the keys).
/// </summary>
public sealed record ShowEnvironment;

/// <summary>The host's environment for <c>integration check-env</c>.</summary>
sealed class EnvironmentCommands(IServiceScopeFactory scopes, OperationsDatabase database, IOptionsMonitor<ControlBusOptions> keys) : IControlHandler<ShowEnvironment>
{
    public async Task<ControlResult> HandleAsync(ShowEnvironment command, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        var known = db.Database.GetMigrations().ToList();
        var applied = (await db.Database.GetAppliedMigrationsAsync(cancellationToken).ConfigureAwait(false)).ToList();
        var pending = known.Except(applied, StringComparer.Ordinal).ToList();
        return ControlResult.Ok(pending.Count == 0 ? "Every migration is applied" : $"{pending.Count} migration(s) pending", new
        {
            migrations = new { known = known.Count, applied, pending },
            keys = keys.CurrentValue.ApiKeys.Select(k => new { name = k.Name, role = k.Role.ToString() }),
        });
    }
}
