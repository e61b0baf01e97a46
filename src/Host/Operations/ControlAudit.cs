using Integration.Host.Persistence;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Operations;

/// <summary>One control action, allowed or refused: who, what, when, and how it ended.</summary>
public sealed class ControlAuditRecord
{
    /// <summary>Sequence.</summary>
    public long Id { get; set; }

    /// <summary>When the action was asked for.</summary>
    public DateTimeOffset At { get; set; }

    /// <summary>Key name, or <c>anonymous</c>/<c>unknown-key</c> for refused callers.</summary>
    public string Actor { get; set; } = "";

    /// <summary>Where the command came from: <c>http</c> or <c>amqp</c>.</summary>
    public string Channel { get; set; } = "";

    /// <summary>Command name, e.g. <c>endpoint.pause</c>.</summary>
    public string Action { get; set; } = "";

    /// <summary>What it applied to (endpoint, route, logger category).</summary>
    public string? Target { get; set; }

    /// <summary>Arguments, as given.</summary>
    public string? Details { get; set; }

    /// <summary><c>ok</c>, <c>denied</c>, <c>unauthorized</c>, <c>not-found</c>, <c>invalid</c> or <c>failed</c>.</summary>
    public string Outcome { get; set; } = "";
}

/// <summary>Writes audit records to PostgreSQL (table <c>control_audit</c>) and reads them back.</summary>
public sealed class ControlAuditLog(IServiceScopeFactory scopes, TimeProvider time)
{
    /// <summary>Maps the audit table.</summary>
    public static void ConfigureModel(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<ControlAuditRecord>(e =>
        {
            e.ToTable("control_audit");
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).UseIdentityAlwaysColumn();
            e.Property(x => x.Actor).HasMaxLength(200);
            e.Property(x => x.Channel).HasMaxLength(16);
            e.Property(x => x.Action).HasMaxLength(100);
            e.Property(x => x.Target).HasMaxLength(500);
            e.Property(x => x.Outcome).HasMaxLength(32);
            e.HasIndex(x => x.At);
        });
    }

    /// <summary>Appends a record.</summary>
    public async Task WriteAsync(string actor, string channel, string action, string? target, string? details, string outcome, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
        db.Set<ControlAuditRecord>().Add(new ControlAuditRecord
        {
            At = time.GetUtcNow(),
            Actor = actor,
            Channel = channel,
            Action = action,
            Target = target,
            Details = details is { Length: > 2000 } ? details[..2000] : details,
            Outcome = outcome,
        });
        await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The newest records first.</summary>
    public async Task<IReadOnlyList<ControlAuditRecord>> ReadAsync(int take, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
        return await db.Set<ControlAuditRecord>().AsNoTracking().OrderByDescending(x => x.Id).Take(Math.Clamp(take, 1, 1000))
            .ToListAsync(cancellationToken).ConfigureAwait(false);
    }
}
