using Microsoft.EntityFrameworkCore;

namespace Integration.Outbox.Model;

/// <summary>
/// An outgoing message, serialized, waiting for the relay: one row per message, which is also the relay's unit of claim
/// (<see cref="LockToken"/> under a lease until <see cref="LockedUntil"/>). The messages one unit of work wrote share a
/// <see cref="TransactionId"/> and are delivered in <see cref="Sequence"/> order: the relay claims a message only with every
/// earlier undelivered message of its transaction.
/// </summary>
public sealed class OutboxMessage
{
    /// <summary>Order of writing; claim order.</summary>
    public long Sequence { get; set; }

    /// <summary>The unit of work (one <c>SaveChanges</c>, or the caller's transaction) that wrote it: its messages go out in order.</summary>
    public Guid TransactionId { get; set; }

    /// <summary>MessageId on the wire: the same on every delivery attempt, so consumers can deduplicate.</summary>
    public Guid MessageId { get; set; }

    /// <summary>Null to publish; else the destination address (e.g. <c>queue:orders</c>).</summary>
    public string? Destination { get; set; }

    /// <summary>Assembly-qualified .NET type of the message.</summary>
    public string MessageType { get; set; } = "";

    /// <summary>The message as JSON.</summary>
    public string Body { get; set; } = "";

    /// <summary>Correlation id, when set.</summary>
    public Guid? CorrelationId { get; set; }

    /// <summary>When it was written.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>
    /// W3C <c>traceparent</c> of the activity that wrote it (e.g. the HTTP request), so the relay's send continues that
    /// trace: one trace from the request through the outbox, the broker and every consumer.
    /// </summary>
    public string? TraceParent { get; set; }

    /// <summary>W3C <c>tracestate</c> that came with <see cref="TraceParent"/>.</summary>
    public string? TraceState { get; set; }

    /// <summary>
    /// The headers and envelope fields (conversation, initiator, request, addresses, TTL) that came through MassTransit's
    /// send pipe, as JSON (<see cref="OutboxEnvelope"/>); null when none.
    /// </summary>
    public string? Envelope { get; set; }

    /// <summary>Which relay claim holds it, until <see cref="LockedUntil"/>.</summary>
    public Guid? LockToken { get; set; }

    /// <summary>End of the current claim; an expired claim (a crashed relay) is taken over.</summary>
    public DateTimeOffset? LockedUntil { get; set; }

    /// <summary>Delivery attempts so far.</summary>
    public int Attempts { get; set; }

    /// <summary>Last delivery failure.</summary>
    public string? LastError { get; set; }

    /// <summary>When the broker confirmed it.</summary>
    public DateTimeOffset? DeliveredAt { get; set; }

    internal OutboxMessage Copy() => (OutboxMessage)MemberwiseClone();
}

/// <summary>Adds the outbox tables to a user's model.</summary>
public static class OutboxModelBuilderExtensions
{
    /// <summary>Table names.</summary>
    public const string MessagesTable = "outbox_messages", InboxTable = "inbox_states";

    /// <summary>
    /// Call once in <c>OnModelCreating</c>: maps <see cref="OutboxMessage"/> and the inbox's <see cref="Inbox.InboxState"/> to
    /// <c>outbox_messages</c> and <c>inbox_states</c> (snake_case
    /// columns), in <paramref name="schema"/> when given (else the model's default schema). The relay and the inbox
    /// take the tables' schema-qualified names from this mapping.
    /// </summary>
    public static ModelBuilder AddIntegrationOutbox(this ModelBuilder modelBuilder, string? schema = null)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        if (schema is not null)
            ArgumentException.ThrowIfNullOrWhiteSpace(schema);
        modelBuilder.Entity<OutboxMessage>(e =>
        {
            e.ToTable(MessagesTable, schema);
            e.HasKey(x => x.Sequence);
            e.Property(x => x.Sequence).HasColumnName("sequence").UseIdentityAlwaysColumn();
            e.Property(x => x.TransactionId).HasColumnName("transaction_id");
            e.Property(x => x.MessageId).HasColumnName("message_id");
            e.Property(x => x.Destination).HasColumnName("destination").HasMaxLength(1000);
            e.Property(x => x.MessageType).HasColumnName("message_type").HasMaxLength(1000);
            e.Property(x => x.Body).HasColumnName("body").HasColumnType("jsonb");
            e.Property(x => x.CorrelationId).HasColumnName("correlation_id");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.DeliveredAt).HasColumnName("delivered_at");
            e.Property(x => x.TraceParent).HasColumnName("trace_parent").HasMaxLength(128);
            e.Property(x => x.TraceState).HasColumnName("trace_state").HasMaxLength(512);
            e.Property(x => x.Envelope).HasColumnName("envelope").HasColumnType("jsonb");
            e.Property(x => x.LockToken).HasColumnName("lock_token");
            e.Property(x => x.LockedUntil).HasColumnName("locked_until");
            e.Property(x => x.Attempts).HasColumnName("attempts");
            e.Property(x => x.LastError).HasColumnName("last_error").HasMaxLength(2000);
            // The claim reads the pending rows in order; the ordering check looks up a pending row's earlier siblings;
            // cleanup finds the delivered rows. Partial indexes: a delivered row leaves the first two.
            e.HasIndex(x => x.Sequence).HasDatabaseName("ix_outbox_messages_pending").HasFilter("delivered_at IS NULL");
            e.HasIndex(x => new { x.TransactionId, x.Sequence }).HasDatabaseName("ix_outbox_messages_transaction").HasFilter("delivered_at IS NULL");
            e.HasIndex(x => x.DeliveredAt).HasDatabaseName("ix_outbox_messages_delivered").HasFilter("delivered_at IS NOT NULL");
        });
        modelBuilder.Entity<Inbox.InboxState>(e =>
        {
            e.ToTable(InboxTable, schema);
            e.HasKey(x => new { x.MessageId, x.Consumer });
            e.Property(x => x.MessageId).HasColumnName("message_id");
            e.Property(x => x.Consumer).HasColumnName("consumer").HasMaxLength(255);
            e.Property(x => x.ReceivedAt).HasColumnName("received_at");
            e.HasIndex(x => x.ReceivedAt).HasDatabaseName("ix_inbox_states_received");
        });
        return modelBuilder;
    }
}

/// <summary>The outbox tables' schema-qualified, quoted names as a DbContext's model maps them, for the relay's and inbox's SQL.</summary>
sealed record OutboxTables(string Messages, string Inbox)
{
    /// <summary>The names in <paramref name="db"/>'s model (a few metadata lookups); throws naming the call when the model does not map the outbox.</summary>
    public static OutboxTables Of(DbContext db) => new(Name(db, typeof(OutboxMessage)), Name(db, typeof(Inbox.InboxState)));

    static string Name(DbContext db, Type entity)
    {
        var type = db.Model.FindEntityType(entity)
            ?? throw new InvalidOperationException($"{db.GetType().Name} does not map the outbox tables: call modelBuilder.AddIntegrationOutbox() in its OnModelCreating");
        var table = type.GetTableName()!;
        var schema = type.GetSchema();
        return schema is null ? Quote(table) : $"{Quote(schema)}.{Quote(table)}";
    }

    static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}
