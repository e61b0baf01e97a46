using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Integration.Sagas.Postgres;

/// <summary>Maps saga instances into a DbContext model, so their tables come from the application's migrations.</summary>
public static class SagaModelBuilderExtensions
{
    /// <summary>Name of the concurrency token mapped to PostgreSQL's <c>xmin</c> system column.</summary>
    public const string RowVersionProperty = "RowVersion";

    /// <summary>
    /// Maps <typeparamref name="TSaga"/> to <paramref name="table"/> with <c>CorrelationId</c> as the key and
    /// <c>xmin</c> as the concurrency token (a <c>uint RowVersion</c> property of the saga when it has one, otherwise a
    /// shadow property). Configure the state's other columns in <paramref name="configure"/>.
    /// </summary>
    public static ModelBuilder AddSagaState<TSaga>(this ModelBuilder modelBuilder, string table, Action<EntityTypeBuilder<TSaga>>? configure = null, string? schema = null)
        where TSaga : class, ISaga
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(table);
        modelBuilder.Entity<TSaga>(entity =>
        {
            entity.ToTable(table, schema);
            entity.HasKey(s => s.CorrelationId);
            entity.Property(s => s.CorrelationId).ValueGeneratedNever();
            entity.Property<uint>(RowVersionProperty).IsRowVersion();
            configure?.Invoke(entity);
        });
        return modelBuilder;
    }
}
