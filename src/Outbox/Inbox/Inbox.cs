using Integration.Outbox.Model;
using Integration.Outbox.Relay;
using Integration.Outbox.Transactions;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace Integration.Outbox.Inbox;

/// <summary>A message an endpoint has consumed: its effects are in the same database, committed with this row.</summary>
public sealed class InboxState
{
    /// <summary>The consumed message's id.</summary>
    public Guid MessageId { get; set; }

    /// <summary>The endpoint (queue) that consumed it.</summary>
    public string Consumer { get; set; } = "";

    /// <summary>When it was consumed.</summary>
    public DateTimeOffset ReceivedAt { get; set; }
}

/// <summary>The user's DbContext as the outbox and inbox see it (registered by <c>AddIntegrationOutbox&lt;TDbContext&gt;</c>, scoped).</summary>
sealed class OutboxDbContext(DbContext context)
{
    /// <summary>The scoped DbContext: the same instance the consumer gets in this message's scope.</summary>
    public DbContext Context { get; } = context;
}

/// <summary>
/// Idempotent consumer (EIP; the inbox): the record <c>(message id, endpoint)</c>, the consumer's writes and what it
/// publishes through <see cref="Writing.IOutbox"/> commit in one database transaction, so a message's effects in this
/// database happen once, also when it is delivered again (a redelivery after a crash between commit and ack, a
/// duplicate publish); what it produced the first time was committed with it and is delivered by the relay.
/// <list type="bullet">
/// <item><b>First deliveries</b> (the broker's redelivered flag not set): the inbox row is tracked beside the consumer's
/// changes and written in the same batch. When the consumer sent no command of its own, that batch commits by itself in
/// one round trip (<see cref="Transactions.DeferredTransaction"/>); otherwise its first command began the transaction
/// and the batch is followed by the <c>COMMIT</c>. A duplicate is recognized by the inbox key: the batch fails, nothing
/// it wrote stays, and the message is checked as below (a copy consumed concurrently waits on the key until the first
/// commits or rolls back).</item>
/// <item><b>Redeliveries</b>, and a first delivery whose write failed: the row is inserted first (<c>ON CONFLICT DO
/// NOTHING</c>) and a message seen before is acknowledged without running the consumer.</item>
/// </list>
/// So a duplicate that is not a redelivery may run the consumer a second time, with nothing of that run committed: effects
/// outside this database (an HTTP call) are not covered by the inbox in any mode, since a crash before the commit repeats
/// them too.
/// </summary>
sealed partial class InboxFilter<TMessage>(OutboxDbContext db, OutboxMetrics metrics, ILogger<InboxFilter<TMessage>> logger,
    TimeProvider time, Transactions.DeferredTransactionInterceptor? deferredTransactions = null) : IFilter<ConsumeContext<TMessage>>
    where TMessage : class
{
    public async Task Send(ConsumeContext<TMessage> context, IPipe<ConsumeContext<TMessage>> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        var messageId = context.MessageId
            ?? throw new InvalidOperationException($"The inbox needs a MessageId to recognize duplicates; this {typeof(TMessage).Name} has none");
        var consumer = context.ReceiveContext.InputAddress.AbsolutePath.TrimEnd('/').Split('/')[^1];
        var database = db.Context.Database;
        var strategy = database.CreateExecutionStrategy();

        if (!context.ReceiveContext.Redelivered && deferredTransactions is not null)
        {
            var written = false;
            try
            {
                written = await strategy.ExecuteAsync(async () =>
                {
                    db.Context.ChangeTracker.Clear();
                    if (await deferredTransactions.StartAsync(db.Context, System.Data.IsolationLevel.ReadCommitted, "The inbox", context.CancellationToken)
                            .ConfigureAwait(false) is not { } unit)
                        return false;
                    await using (unit.ConfigureAwait(false))
                    {
                        db.Context.Add(new InboxState { MessageId = messageId, Consumer = consumer, ReceivedAt = time.GetUtcNow() });
                        await next.Send(context).ConfigureAwait(false);
                        await unit.CompleteAsync(context.CancellationToken).ConfigureAwait(false);
                    }

                    return true;
                }).ConfigureAwait(false);
            }
            catch (DbUpdateException)
            {
                // The inbox key (a duplicate) or another write failed; nothing committed. Decide as for a redelivery: a
                // duplicate is acknowledged, anything else runs once more and fails there with its own error.
                db.Context.ChangeTracker.Clear();
            }

            if (written)
                return;
        }

        var insert = $"INSERT INTO {OutboxTables.Of(db.Context).Inbox} (message_id, consumer, received_at) VALUES ({{0}}, {{1}}, now()) ON CONFLICT DO NOTHING";
        await strategy.ExecuteAsync(async () =>
        {
            db.Context.ChangeTracker.Clear();
            await using var transaction = await database.BeginTransactionAsync(context.CancellationToken).ConfigureAwait(false);
            var first = await database.ExecuteSqlRawAsync(insert, [messageId, consumer], context.CancellationToken).ConfigureAwait(false);
            if (first == 0)
            {
                await transaction.RollbackAsync(context.CancellationToken).ConfigureAwait(false);
                metrics.Duplicates.Add(1, new KeyValuePair<string, object?>("consumer", consumer));
                LogDuplicate(logger, messageId, consumer);
                // Consumed before: say so, or MassTransit would move the duplicate to <queue>_skipped as unconsumed.
                await context.NotifyConsumed(context, TimeSpan.Zero, "integration-inbox").ConfigureAwait(false);
                return;
            }

            await next.Send(context).ConfigureAwait(false);
            // No savepoint around the save: a failure rolls the whole transaction back (inbox row included) anyway, and
            // EF Core's SAVEPOINT and RELEASE were two round trips of their own on every message.
            await db.Context.SaveWithoutSavepointAsync(context.CancellationToken).ConfigureAwait(false);

            await transaction.CommitAsync(context.CancellationToken).ConfigureAwait(false);
        }).ConfigureAwait(false);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("inbox");

    [LoggerMessage(Level = LogLevel.Information, Message = "Inbox: message {MessageId} was already consumed by {Consumer}; acknowledged without running it again")]
    static partial void LogDuplicate(ILogger logger, Guid messageId, string consumer);
}

/// <summary>Switches the inbox on for a receive endpoint.</summary>
public static class InboxConfigurationExtensions
{
    /// <summary>
    /// Every consumer on this endpoint runs inside an inbox transaction on the DbContext registered with
    /// <c>AddIntegrationOutbox&lt;TDbContext&gt;</c>: effects once per message id, also under redelivery.
    /// </summary>
    public static void UseIntegrationInbox(this IReceiveEndpointConfigurator endpoint, IRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(context);
        endpoint.UseConsumeFilter(typeof(InboxFilter<>), context);
    }
}
