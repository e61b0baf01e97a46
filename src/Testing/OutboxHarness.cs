using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Testing;

/// <summary>The host's transactional outbox (<c>outbox_messages</c>) as the relay sees it.</summary>
public sealed class OutboxHarness
{
    readonly IServiceProvider _services;
    readonly IReadOnlyList<Type> _dbContextTypes;

    internal OutboxHarness(IServiceProvider services, IReadOnlyList<Type> dbContextTypes)
    {
        _services = services;
        _dbContextTypes = dbContextTypes;
    }

    /// <summary>
    /// Awaits the relay having delivered (broker-confirmed) every outbox transaction committed before this call, in every
    /// DbContext of the host that maps the outbox. Fails after <paramref name="timeout"/> (30 seconds by default) listing the
    /// undelivered messages with their attempts and last error.
    /// </summary>
    public async Task WaitUntilDeliveredAsync(TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var contexts = HostDbContexts.Mapping(_services, _dbContextTypes, typeof(OutboxMessage));
        if (contexts.Count == 0)
            throw new InvalidOperationException(
                $"No DbContext of the host maps the outbox (modelBuilder.AddIntegrationOutbox()); registered: {HostDbContexts.Names(_dbContextTypes)}");

        var committed = new Dictionary<Type, long>();
        foreach (var type in contexts)
        {
            await using var scope = _services.CreateAsyncScope();
            var db = (DbContext)scope.ServiceProvider.GetRequiredService(type);
            committed[type] = await db.Set<OutboxMessage>().MaxAsync(m => (long?)m.Sequence, cancellationToken).ConfigureAwait(false) ?? 0;
        }

        var observed = "nothing read yet";
        await Observe.UntilAsync("every outbox transaction committed so far delivered", async token =>
        {
            var undelivered = new List<string>();
            foreach (var type in contexts)
            {
                await using var scope = _services.CreateAsyncScope();
                var db = (DbContext)scope.ServiceProvider.GetRequiredService(type);
                var upTo = committed[type];
                var pending = await db.Set<OutboxMessage>().AsNoTracking()
                    .Where(m => m.Sequence <= upTo && m.DeliveredAt == null)
                    .OrderBy(m => m.Sequence).Take(50)
                    .Select(m => new { m.TransactionId, m.Sequence, m.MessageType, m.Destination, m.Attempts, m.LastError })
                    .ToListAsync(token).ConfigureAwait(false);
                foreach (var transaction in pending.GroupBy(m => m.TransactionId).Take(20))
                {
                    var first = transaction.First();
                    var messages = transaction.Select(m => m.MessageType + " to " + (m.Destination ?? "(publish)"));
                    var failed = transaction.FirstOrDefault(m => m.LastError is not null);
                    undelivered.Add($"{type.Name} transaction {first.Sequence} [{string.Join(", ", messages)}] attempts {transaction.Max(m => m.Attempts)}" +
                                    (failed is null ? "" : $", last error: {failed.LastError}"));
                }
            }

            observed = undelivered.Count == 0 ? "everything delivered" : "undelivered: " + string.Join("; ", undelivered);
            return undelivered.Count == 0;
        }, delivered => delivered, () => observed, timeout, cancellationToken).ConfigureAwait(false);
    }
}
