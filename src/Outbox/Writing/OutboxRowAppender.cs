using System.Data.Common;
using System.Text;
using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Metadata;
using Npgsql;
using NpgsqlTypes;

namespace Integration.Outbox.Writing;

/// <summary>
/// Writes a save's outbox rows without EF Core's change tracker: one multi-row <c>INSERT</c> appended to the save's first
/// command, so the rows commit or roll back with that command exactly as tracked rows would (same command, same
/// transaction: EF Core's, the caller's, or PostgreSQL's implicit one of a single command), with none of the tracker's work
/// (a snapshot, sixteen column modifications and parameters, the <c>RETURNING sequence</c> read back, the accept pass).
/// <para>
/// Taken only when the rest of the save is <c>INSERT</c>s (<see cref="Eligible"/>): an <c>UPDATE</c> or <c>DELETE</c> that
/// matches no row is no database error, so in a command without an explicit transaction the appended rows would commit
/// although EF Core then fails the save. Everything else keeps the tracked rows. The rows are detached from the tracker
/// for the save (<see cref="OutboxNotifyInterceptor"/> does that, after leasing them) and attached again as Added when the save
/// fails or is cancelled, so a retried save writes them, as it would tracked rows.
/// </para>
/// </summary>
sealed class OutboxRowAppender : DbCommandInterceptor
{
    /// <summary>The rows the save in progress of a DbContext appends; per DbContext instance (in its <see cref="Transactions.ContextSlots"/>).</summary>
    readonly Transactions.ContextTable<AppendedRows> _saves = new();

    /// <summary>Marks a DbContext whose save sent a command (<see cref="TakeSent"/>): a save that sent none wrote nothing.</summary>
    readonly Transactions.ContextTable<object> _sent = new();

    static readonly object Sent = new();

    const string Columns = "transaction_id, message_id, destination, message_type, body, correlation_id, created_at, trace_parent, trace_state, envelope, " +
                           "lock_token, locked_until, attempts";

    const int ColumnCount = 13;

    sealed record Prefix(IModel Model, string Sql);

    Prefix? _prefix;

    /// <summary>True when this interceptor is on <paramref name="context"/>'s options (else its rows stay tracked: nothing would append them).</summary>
    internal bool IsOn(DbContext context) => ReferenceEquals(On(context), this);

    /// <summary>The appender on <paramref name="context"/>'s options, if any.</summary>
    internal static OutboxRowAppender? On(DbContext context)
    {
        if (context.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.Interceptors is { } interceptors)
        {
            foreach (var interceptor in interceptors)
            {
                if (interceptor is OutboxRowAppender appender)
                    return appender;
            }
        }

        return null;
    }

    /// <summary>
    /// True when the rest of <paramref name="context"/>'s save is only <c>INSERT</c>s, at least one (the command the rows ride
    /// in), on PostgreSQL. Runs change detection first (as the save does next), so an entity changed since it was
    /// tracked counts as the <c>UPDATE</c> it becomes.
    /// </summary>
    internal static bool Eligible(DbContext context)
    {
        if (context.Database.GetDbConnection() is not NpgsqlConnection)
            return false;
        var inserts = false;
        foreach (var entry in context.ChangeTracker.Entries())
        {
            switch (entry.State)
            {
                case EntityState.Added when entry.Entity is OutboxMessage:
                    continue;
                case EntityState.Added:
                    // An entity without a table of its own (a view, a raw SQL query, a JSON-owned part) may ride in its owner's
                    // statement or none: only an Added entity with a table is certainly an INSERT of this save.
                    if (entry.Metadata.GetTableName() is null)
                        return false;
                    inserts = true;
                    break;
                case EntityState.Modified or EntityState.Deleted:
                    return false;
            }
        }

        return inserts;
    }

    /// <summary>From now until the save ends, <paramref name="rows"/> (detached by the caller) are appended to the save's first command.</summary>
    internal void Append(DbContext context, List<OutboxMessage> rows) => _saves.AddOrUpdate(context, new AppendedRows(rows));

    /// <summary>
    /// True when a command of a save ran on <paramref name="context"/> since the last call (every save that writes a row
    /// sends one); clears the mark. A save another interceptor suppressed sends none: its outbox rows were not written.
    /// </summary>
    internal bool TakeSent(DbContext context)
    {
        if (!_sent.TryGetValue(context, out _))
            return false;
        _sent.Remove(context);
        return true;
    }

    /// <summary>True while <paramref name="context"/>'s save appends outbox rows (they are not in the tracker, but the save writes them).</summary>
    internal bool IsAppending(DbContext context) => _saves.TryGetValue(context, out _);

    /// <summary>The save ended: returns its appended rows (null when it appended none) and forgets them.</summary>
    internal List<OutboxMessage>? End(DbContext context)
    {
        if (!_saves.TryGetValue(context, out var save))
            return null;
        _saves.Remove(context);
        return save.Rows;
    }

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        AppendTo(command, eventData);
        return result;
    }

    public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        AppendTo(command, eventData);
        return ValueTask.FromResult(result);
    }

    public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
    {
        AppendTo(command, eventData);
        return result;
    }

    public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        AppendTo(command, eventData);
        return ValueTask.FromResult(result);
    }

    void AppendTo(DbCommand command, CommandEventData eventData)
    {
        if (eventData.CommandSource != CommandSource.SaveChanges || eventData.Context is not { } context)
            return;
        _sent.AddOrUpdate(context, Sent);
        if (!_saves.TryGetValue(context, out var save) || save.Written)
            return;
        if (command is not NpgsqlCommand npgsql)
            throw new InvalidOperationException($"The outbox appends its rows to Npgsql commands only, not to {command.GetType().Name}");
        var sql = new StringBuilder(npgsql.CommandText.Length + 64 + save.Rows.Count * 96);
        sql.Append(npgsql.CommandText);
        if (sql.Length > 0 && sql[^1] != ';')
            sql.Append(';');
        sql.Append('\n').Append(PrefixFor(context)).Append(" VALUES ");
        var parameters = npgsql.Parameters;
        for (var i = 0; i < save.Rows.Count; i++)
        {
            var row = save.Rows[i];
            var name = "ox" + i.ToString(System.Globalization.CultureInfo.InvariantCulture) + "_";
            sql.Append(i == 0 ? "(" : ", (");
            for (var c = 0; c < ColumnCount; c++)
                sql.Append(c == 0 ? "@" : ", @").Append(name).Append(c);
            sql.Append(')');
            parameters.Add(new NpgsqlParameter<Guid>(name + "0", row.TransactionId));
            parameters.Add(new NpgsqlParameter<Guid>(name + "1", row.MessageId));
            parameters.Add(Nullable(name + "2", NpgsqlDbType.Text, row.Destination));
            parameters.Add(new NpgsqlParameter<string>(name + "3", row.MessageType));
            parameters.Add(new NpgsqlParameter<string>(name + "4", NpgsqlDbType.Jsonb) { TypedValue = row.Body });
            parameters.Add(Nullable(name + "5", NpgsqlDbType.Uuid, row.CorrelationId));
            parameters.Add(new NpgsqlParameter<DateTimeOffset>(name + "6", row.CreatedAt));
            parameters.Add(Nullable(name + "7", NpgsqlDbType.Text, row.TraceParent));
            parameters.Add(Nullable(name + "8", NpgsqlDbType.Text, row.TraceState));
            parameters.Add(Nullable(name + "9", NpgsqlDbType.Jsonb, row.Envelope));
            parameters.Add(Nullable(name + "10", NpgsqlDbType.Uuid, row.LockToken));
            parameters.Add(Nullable(name + "11", NpgsqlDbType.TimestampTz, row.LockedUntil));
            parameters.Add(new NpgsqlParameter<int>(name + "12", row.Attempts));
        }

        npgsql.CommandText = sql.ToString();
        save.Written = true;
    }

    static NpgsqlParameter Nullable(string name, NpgsqlDbType type, object? value) => new(name, type) { Value = value ?? DBNull.Value };

    /// <summary>The <c>INSERT INTO … (columns)</c> for the model's outbox table (built once per model).</summary>
    string PrefixFor(DbContext context)
    {
        var model = context.Model;
        var prefix = Volatile.Read(ref _prefix);
        if (prefix is null || !ReferenceEquals(prefix.Model, model))
            Volatile.Write(ref _prefix, prefix = new Prefix(model, $"INSERT INTO {OutboxTables.Of(context).Messages} ({Columns})"));
        return prefix.Sql;
    }

    internal sealed class AppendedRows(List<OutboxMessage> rows)
    {
        public List<OutboxMessage> Rows { get; } = rows;

        public bool Written { get; set; }
    }
}
