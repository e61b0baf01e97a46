using Microsoft.EntityFrameworkCore;

namespace Integration.Patterns.Postgres.Aggregation;

/// <summary>
/// One group being aggregated (or resequenced): its row is locked (<c>SELECT … FOR UPDATE</c>) while a message joins it,
/// so several consumers of the same queue, on several machines, add to it one at a time.
/// </summary>
internal sealed class AggregationGroupState
{
    /// <summary>The aggregator or resequencer: <c>{route}/{step name}</c>.</summary>
    public string Aggregator { get; set; } = "";

    /// <summary>The correlation key.</summary>
    public string GroupKey { get; set; } = "";

    /// <summary>When its first message arrived.</summary>
    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>When it completes by timeout, if it has a timeout.</summary>
    public DateTimeOffset? ExpiresAt { get; set; }

    /// <summary>The size it completes at, when taken from the sequence headers.</summary>
    public int? ExpectedSize { get; set; }

    /// <summary>Messages in it.</summary>
    public int MessageCount { get; set; }

    /// <summary>Stream resequencer: the next sequence number to release.</summary>
    public long NextSequence { get; set; }

    /// <summary>When it completed; null while open.</summary>
    public DateTimeOffset? CompletedAt { get; set; }

    /// <summary><c>Size</c>, <c>Timeout</c> or <c>Predicate</c>.</summary>
    public string? CompletedBy { get; set; }
}

/// <summary>A message held in a group, serialized as JSON.</summary>
internal sealed class AggregationMessageState
{
    /// <summary>The aggregator.</summary>
    public string Aggregator { get; set; } = "";

    /// <summary>The group.</summary>
    public string GroupKey { get; set; } = "";

    /// <summary>The message's id: a redelivered message is recognized and not added twice.</summary>
    public Guid MessageId { get; set; }

    /// <summary>Its position (sequence index or number) when it has one.</summary>
    public long? Sequence { get; set; }

    /// <summary>The message as JSON.</summary>
    public string Body { get; set; } = "";

    /// <summary>When it arrived.</summary>
    public DateTimeOffset ReceivedAt { get; set; }

    /// <summary>Stream resequencer: when it was sent on.</summary>
    public DateTimeOffset? ReleasedAt { get; set; }
}

/// <summary>Maps the aggregation tables (through <see cref="PatternStoreModelBuilderExtensions.AddIntegrationPatterns"/>).</summary>
internal static class AggregationModel
{
    public static void Map(ModelBuilder modelBuilder, string? schema)
    {
        modelBuilder.Entity<AggregationGroupState>(e =>
        {
            e.ToTable(PatternStoreModelBuilderExtensions.GroupsTable, schema);
            e.HasKey(x => new { x.Aggregator, x.GroupKey }).HasName("pk_integration_aggregation_groups");
            e.Property(x => x.Aggregator).HasColumnName("aggregator").HasMaxLength(500);
            e.Property(x => x.GroupKey).HasColumnName("group_key").HasMaxLength(500);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.ExpiresAt).HasColumnName("expires_at");
            e.Property(x => x.ExpectedSize).HasColumnName("expected_size");
            e.Property(x => x.MessageCount).HasColumnName("message_count");
            e.Property(x => x.NextSequence).HasColumnName("next_sequence");
            e.Property(x => x.CompletedAt).HasColumnName("completed_at");
            e.Property(x => x.CompletedBy).HasColumnName("completed_by").HasMaxLength(20);
            e.HasIndex(x => new { x.Aggregator, x.ExpiresAt }).HasDatabaseName("ix_integration_aggregation_groups_open").HasFilter("completed_at IS NULL");
            e.HasIndex(x => new { x.Aggregator, x.CompletedAt }).HasDatabaseName("ix_integration_aggregation_groups_completed").HasFilter("completed_at IS NOT NULL");
        });
        modelBuilder.Entity<AggregationMessageState>(e =>
        {
            e.ToTable(PatternStoreModelBuilderExtensions.MessagesTable, schema);
            e.HasKey(x => new { x.Aggregator, x.GroupKey, x.MessageId }).HasName("pk_integration_aggregation_messages");
            e.Property(x => x.Aggregator).HasColumnName("aggregator").HasMaxLength(500);
            e.Property(x => x.GroupKey).HasColumnName("group_key").HasMaxLength(500);
            e.Property(x => x.MessageId).HasColumnName("message_id");
            e.Property(x => x.Sequence).HasColumnName("sequence");
            e.Property(x => x.Body).HasColumnName("body");
            e.Property(x => x.ReceivedAt).HasColumnName("received_at");
            e.Property(x => x.ReleasedAt).HasColumnName("released_at");
            e.HasOne<AggregationGroupState>().WithMany().HasForeignKey(x => new { x.Aggregator, x.GroupKey })
                .HasConstraintName("fk_integration_aggregation_messages_groups").OnDelete(DeleteBehavior.Cascade);
        });
    }
}
