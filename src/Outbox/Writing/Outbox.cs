using System.Diagnostics;
using System.Text.Json;
using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Outbox.Writing;

/// <summary>
/// Publishes and sends through the transactional outbox: the messages are rows in the same DbContext as the business
/// data, written by the same <c>SaveChanges</c> (and transaction). Nothing reaches the broker unless that commits;
/// the relay delivers what committed, with publisher confirms, and wakes right after the commit.
/// </summary>
public interface IOutbox
{
    /// <summary>Publishes <paramref name="message"/> when the transaction commits. Returns its MessageId.</summary>
    Guid Publish<T>(T message, Guid? correlationId = null)
        where T : class;

    /// <summary>Sends <paramref name="message"/> to <paramref name="destination"/> (e.g. <c>queue:orders</c>) when the transaction commits.</summary>
    Guid Send<T>(Uri destination, T message, Guid? correlationId = null)
        where T : class;
}

/// <summary>
/// The scoped outbox over one DbContext: the messages of one database transaction (or, without an explicit one, those
/// added until the next save) share one <see cref="OutboxMessage.TransactionId"/> and keep their write order (one row
/// each, nothing else is written): a transaction that saves several times is still one unit of order. In a
/// consumer's scope (<paramref name="services"/> given) a message written here continues the consumed message's
/// conversation and names it as its initiator, as <c>context.Publish</c> would.
/// </summary>
sealed class EntityFrameworkOutbox(DbContext db, TimeProvider time, IServiceProvider? services = null) : IOutbox
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    Guid _transactionId;
    OutboxMessage? _last;
    object? _databaseTransaction;

    /// <inheritdoc />
    public Guid Publish<T>(T message, Guid? correlationId = null)
        where T : class => Add(null, message, correlationId);

    /// <inheritdoc />
    public Guid Send<T>(Uri destination, T message, Guid? correlationId = null)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(destination);
        return Add(destination.ToString(), message, correlationId);
    }

    Guid Add<T>(string? destination, T message, Guid? correlationId)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(message);
        return Add(destination, message, message.GetType(), Guid.CreateVersion7(), correlationId, Caused());
    }

    /// <summary>The envelope MassTransit gives a message published from the scope's consume context; a new conversation outside one.</summary>
    OutboxEnvelope Caused()
    {
        var consumed = services?.GetService<MassTransit.DependencyInjection.IScopedConsumeContextProvider>() is { HasContext: true } provider
            ? provider.GetContext()
            : null;
        return consumed is null
            ? new OutboxEnvelope { ConversationId = MassTransit.NewId.NextGuid() }
            : new OutboxEnvelope
            {
                ConversationId = consumed.ConversationId ?? MassTransit.NewId.NextGuid(),
                InitiatorId = consumed.CorrelationId ?? consumed.MessageId,
                SourceAddress = consumed.ReceiveContext.InputAddress,
            };
    }

    /// <summary>Adds one message to this scope's outbox transaction (the bus outbox's seam: MessageId chosen by the caller).</summary>
    internal Guid Add(string? destination, object message, Type messageType, Guid messageId, Guid? correlationId, OutboxEnvelope? envelope = null)
    {
        var now = time.GetUtcNow();
        // A new outbox transaction once the previous messages were saved (Unchanged) or discarded (Detached), unless they
        // were saved in the database transaction still open: its later saves continue the same order.
        var databaseTransaction = db.Database.CurrentTransaction;
        if (_last is null || (db.Entry(_last).State is EntityState.Detached or EntityState.Unchanged
                              && (databaseTransaction is null || !ReferenceEquals(databaseTransaction, _databaseTransaction))))
            _transactionId = Guid.CreateVersion7();
        _databaseTransaction = databaseTransaction;

        db.Add(_last = new OutboxMessage
        {
            TransactionId = _transactionId,
            MessageId = messageId,
            Destination = destination,
            MessageType = messageType.AssemblyQualifiedName ?? throw new ArgumentException("The message type has no name", nameof(messageType)),
            Body = JsonSerializer.Serialize(message, messageType, Json),
            CorrelationId = correlationId,
            CreatedAt = now,
            TraceParent = Activity.Current is { IdFormat: ActivityIdFormat.W3C } current ? current.Id : null,
            TraceState = Activity.Current?.TraceStateString,
            Envelope = envelope?.Serialize(),
        });
        return messageId;
    }
}
