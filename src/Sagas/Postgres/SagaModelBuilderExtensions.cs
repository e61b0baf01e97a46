using System.Text;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Integration.Sagas.Postgres;

/// <summary>Maps saga instances into a DbContext model, so their tables come from the application's migrations.</summary>
public static class SagaModelBuilderExtensions
{
    /// <summary>Name of the concurrency token mapped to PostgreSQL's <c>xmin</c> system column.</summary>
    public const string RowVersionProperty = "RowVersion";

    /// <summary>
    /// Maps <typeparamref name="TSaga"/> to <paramref name="table"/> (in <paramref name="schema"/> when given) with
    /// <c>CorrelationId</c> as the key and <c>xmin</c> as the concurrency token (a <c>uint RowVersion</c> property of the
    /// saga when it has one, otherwise a shadow property). Every property is a snake_case column
    /// (<c>CorrelationId</c> → <c>correlation_id</c>, <c>ApprovalTimeoutTokenId</c> → <c>approval_timeout_token_id</c>), the key is
    /// <c>pk_{table}</c> and each index <c>ix_{table}_{columns}</c>, like every other table the framework owns. Configure the
    /// state's other columns (lengths, types, indexes) in <paramref name="configure"/>; a column name set there explicitly is kept.
    /// </summary>
    public static ModelBuilder AddIntegrationSagaState<TSaga>(this ModelBuilder modelBuilder, string table, Action<EntityTypeBuilder<TSaga>>? configure = null,
        string? schema = null)
        where TSaga : class, ISaga
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(table);
        if (schema is not null)
            ArgumentException.ThrowIfNullOrWhiteSpace(schema);
        modelBuilder.Entity<TSaga>(entity =>
        {
            entity.ToTable(table, schema);
            entity.HasKey(s => s.CorrelationId).HasName($"pk_{table}");
            entity.Property(s => s.CorrelationId).ValueGeneratedNever();
            entity.Property<uint>(RowVersionProperty).IsRowVersion();
            configure?.Invoke(entity);

            foreach (var property in entity.Metadata.GetDeclaredProperties())
            {
                // The row version is PostgreSQL's xmin system column (Npgsql maps it); a name set in configure wins.
                if (property.Name == RowVersionProperty || property.FindAnnotation(RelationalAnnotationNames.ColumnName) is not null)
                    continue;
                property.SetColumnName(SnakeCase(property.Name));
            }

            foreach (var index in entity.Metadata.GetDeclaredIndexes())
            {
                if (index.FindAnnotation(RelationalAnnotationNames.Name) is null)
                    index.SetDatabaseName($"ix_{table}_{string.Join('_', index.Properties.Select(p => p.GetColumnName()))}");
            }
        });
        return modelBuilder;
    }

    /// <summary><c>CorrelationId</c> → <c>correlation_id</c>, <c>IPAddress</c> → <c>ip_address</c>, <c>Step2Done</c> → <c>step2_done</c>.</summary>
    internal static string SnakeCase(string name)
    {
        var builder = new StringBuilder(name.Length + 8);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsUpper(c))
            {
                var previous = i > 0 ? name[i - 1] : '\0';
                var next = i + 1 < name.Length ? name[i + 1] : '\0';
                if (i > 0 && previous != '_' && (char.IsLower(previous) || char.IsDigit(previous) || (char.IsUpper(previous) && char.IsLower(next))))
                    builder.Append('_');
                builder.Append(char.ToLowerInvariant(c));
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }
}
