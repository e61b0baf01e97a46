using Integration.Outbox.Model;
using Integration.Outbox.Relay;
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
/// Idempotent consumer (EIP; the inbox): in one database transaction, records <c>(message id, endpoint)</c>, runs the
/// consumer — its writes and what it publishes through <see cref="Writing.IOutbox"/> — and commits. A message seen
/// before (a redelivery after a crash between commit and ack, a duplicate publish) is acknowledged without running the
/// consumer again; what it produced the first time was committed with it and is delivered by the relay.
/// </summary>
sealed partial class InboxFilter<TMessage>(OutboxDbContext db, OutboxMetrics metrics, ILogger<InboxFilter<TMessage>> logger) : IFilter<ConsumeContext<TMessage>>
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
        var insert = $"INSERT INTO {OutboxTables.Of(db.Context).Inbox} (message_id, consumer, received_at) VALUES ({{0}}, {{1}}, now()) ON CONFLICT DO NOTHING";
        var strategy = database.CreateExecutionStrategy();

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
            var savepoints = database.AutoSavepointsEnabled;
            database.AutoSavepointsEnabled = false;
            try
            {
                await db.Context.SaveChangesAsync(context.CancellationToken).ConfigureAwait(false);
            }
            finally
            {
                database.AutoSavepointsEnabled = savepoints;
            }

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
