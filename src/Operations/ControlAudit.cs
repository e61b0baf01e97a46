using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Operations;

/// <summary>One control action, allowed or refused: who, what, when, and how it ended (table <c>control_audit</c>).</summary>
public sealed class ControlAuditRecord
{
    /// <summary>Sequence.</summary>
    public long Id { get; set; }

    /// <summary>When the action was asked for.</summary>
    public DateTimeOffset At { get; set; }

    /// <summary>Key name, or <c>anonymous</c> for callers without a valid key.</summary>
    public string Actor { get; set; } = "";

    /// <summary>Where the command came from: <c>http</c> or <c>amqp</c>.</summary>
    public string Channel { get; set; } = "";

    /// <summary>Command name, e.g. <c>endpoint.pause</c>.</summary>
    public string Action { get; set; } = "";

    /// <summary>What it applied to (endpoint, route, logger category).</summary>
    public string? Target { get; set; }

    /// <summary>Arguments, as given (JSON).</summary>
    public string? Details { get; set; }

    /// <summary><c>ok</c>, <c>denied</c>, <c>unauthorized</c>, <c>not-found</c>, <c>invalid</c> or <c>failed</c>.</summary>
    public string Outcome { get; set; } = "";
}

/// <summary>Writes audit records to the application's database and reads them back.</summary>
sealed class ControlAuditLog(IServiceScopeFactory scopes, OperationsDatabase database, TimeProvider time)
{
    public async Task WriteAsync(string actor, string channel, string action, string? target, string? details, string outcome, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        db.Set<ControlAuditRecord>().Add(new ControlAuditRecord
        {
            At = time.GetUtcNow(),
            Actor = actor,
            Channel = channel,
            Action = action,
            Target = target is { Length: > 500 } ? target[..500] : target,
            Details = details is { Length: > 2000 } ? details[..2000] : details,
            Outcome = outcome,
        });
        await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The newest records first.</summary>
    public async Task<IReadOnlyList<ControlAuditRecord>> ReadAsync(int take, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        return await db.Set<ControlAuditRecord>().AsNoTracking().OrderByDescending(x => x.Id).Take(Math.Clamp(take, 1, 1000))
            .ToListAsync(cancellationToken).ConfigureAwait(false);
    }
}
