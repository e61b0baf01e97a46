using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Integration.Operations;

/// <summary>The operations tables in the application's DbContext.</summary>
public static class OperationsModel
{
    /// <summary>Table of the control bus audit log.</summary>
    public const string AuditTable = "control_audit";

    /// <summary>Table of the message store.</summary>
    public const string MessageStoreTable = "message_store";

    /// <summary>
    /// Maps <c>control_audit</c>, <c>message_store</c> and <c>saga_timeline</c> (snake_case columns) in <paramref name="schema"/> (null: the
    /// default schema). Call it in <c>OnModelCreating</c> of the DbContext passed to <c>AddIntegrationOperations</c>.
    /// </summary>
    public static ModelBuilder AddIntegrationOperations(this ModelBuilder modelBuilder, string? schema = null)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<ControlAuditRecord>(e =>
        {
            e.ToTable(AuditTable, schema);
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(x => x.At).HasColumnName("at");
            Text(e.Property(x => x.Actor), "actor", 200);
            Text(e.Property(x => x.Channel), "channel", 16);
            Text(e.Property(x => x.Action), "action", 100);
            Text(e.Property(x => x.Target), "target", 500);
            e.Property(x => x.Details).HasColumnName("details");
            Text(e.Property(x => x.Outcome), "outcome", 32);
            e.HasIndex(x => x.At);
        });

        modelBuilder.Entity<StoredMessage>(e =>
        {
            e.ToTable(MessageStoreTable, schema);
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            e.Property(x => x.StoredAt).HasColumnName("stored_at");
            Text(e.Property(x => x.Exchange), "exchange", 255);
            Text(e.Property(x => x.MessageId), "message_id", 100);
            Text(e.Property(x => x.CorrelationId), "correlation_id", 100);
            Text(e.Property(x => x.ConversationId), "conversation_id", 100);
            Text(e.Property(x => x.InitiatorId), "initiator_id", 100);
            Text(e.Property(x => x.MessageType), "message_type", 500);
            Text(e.Property(x => x.ContentType), "content_type", 200);
            e.Property(x => x.Headers).HasColumnName("headers").HasColumnType("jsonb");
            e.Property(x => x.History).HasColumnName("history").HasColumnType("jsonb");
            e.Property(x => x.Body).HasColumnName("body");
            e.HasIndex(x => x.StoredAt);
            e.HasIndex(x => x.CorrelationId);
            e.HasIndex(x => x.MessageType);
            e.HasIndex(x => new { x.MessageId, x.Exchange }).IsUnique();
        });
        SagaTimelineModel.Map(modelBuilder, schema);
        return modelBuilder;
    }

    static void Text(PropertyBuilder property, string column, int length) => property.HasColumnName(column).HasMaxLength(length);
}

/// <summary>How the operations library reaches the application's DbContext.</summary>
sealed class OperationsDatabase(Func<IServiceProvider, DbContext> resolve)
{
    public DbContext Open(IServiceProvider scope)
    {
        var db = resolve(scope);
        if (db.Model.FindEntityType(typeof(ControlAuditRecord)) is null)
            throw new InvalidOperationException($"{db.GetType().Name} does not map the operations tables: call modelBuilder.AddIntegrationOperations() in its OnModelCreating");
        return db;
    }
}
