using System.Text;
using Npgsql;

namespace Integration.Outbox.Leases;

/// <summary>
/// A leader lease on PostgreSQL: a session-level advisory lock (<c>pg_try_advisory_lock</c>) held on a dedicated
/// connection of its own (not pooled), so at most one session of the database holds a lease name at a time. Nothing
/// to renew and no table: the lock lives as long as the session. It is released by <see cref="DisposeAsync"/> (a
/// graceful stop hands over at once) and by PostgreSQL when the session ends (the process died, its connection was
/// cut or terminated), after which the next <see cref="TryHoldAsync"/> of another instance takes it.
/// The session's <c>application_name</c> is <c>integration-lease:{instance}</c>, which is how <see cref="HolderAsync"/>
/// tells who holds it. Needs a direct connection or session pooling (a transaction-pooling PgBouncer cannot hold a
/// session lock). Not thread-safe: one caller drives it.
/// </summary>
public sealed class PostgresLeaderLease : IAsyncDisposable
{
    /// <summary>The first half of every lease's advisory lock key: the framework's lock space.</summary>
    const int LockSpace = 0x494E5447 & 0x7FFFFFFF;   // "INTG"
    const string ApplicationPrefix = "integration-lease:";

    readonly string _connectionString;
    readonly int _key;
    NpgsqlConnection? _connection;

    /// <summary>Creates the lease <paramref name="name"/> for <paramref name="instance"/> on the database of <paramref name="connectionString"/>; connects on first use.</summary>
    public PostgresLeaderLease(string connectionString, string name, string instance, TimeSpan commandTimeout)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentException.ThrowIfNullOrWhiteSpace(instance);
        Name = name;
        Instance = instance;
        _key = KeyOf(name);
        _connectionString = new NpgsqlConnectionStringBuilder(connectionString)
        {
            Pooling = false,   // the lock belongs to this session: closing it must end the session
            ApplicationName = (ApplicationPrefix + instance)[..Math.Min(63, ApplicationPrefix.Length + instance.Length)],
            CommandTimeout = Math.Max(1, (int)Math.Ceiling(commandTimeout.TotalSeconds)),
            Timeout = Math.Max(1, (int)Math.Ceiling(commandTimeout.TotalSeconds)),
            KeepAlive = Math.Max(1, (int)Math.Ceiling(commandTimeout.TotalSeconds)),
        }.ConnectionString;
    }

    /// <summary>The lease name; with the database it identifies the lock.</summary>
    public string Name { get; }

    /// <summary>Who this process is in <see cref="HolderAsync"/>'s answers.</summary>
    public string Instance { get; }

    /// <summary>True once <see cref="TryHoldAsync"/> acquired the lock, until it failed to confirm it or the lease was disposed.</summary>
    public bool IsHeld { get; private set; }

    /// <summary>
    /// Acquires the lease when it is free and confirms it when this instance holds it (a round trip on its session).
    /// Returns whether this instance holds it now. A database error drops the session, so the lease is not held
    /// afterwards (PostgreSQL released it with the session, or will when it notices); the next call reconnects.
    /// </summary>
    public async Task<bool> TryHoldAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (_connection is null)
            {
                _connection = new NpgsqlConnection(_connectionString);
                await _connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            }

            await using var command = _connection.CreateCommand();
            if (IsHeld)
            {
                // Still our session, and the lock still granted to it.
                command.CommandText = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() " +
                                      "AND classid = $1::oid AND objid = $2::oid AND objsubid = 2)";
            }
            else
            {
                command.CommandText = "SELECT pg_try_advisory_lock($1, $2)";
            }

            command.Parameters.Add(new NpgsqlParameter { Value = LockSpace });
            command.Parameters.Add(new NpgsqlParameter { Value = _key });
            IsHeld = (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            return IsHeld;
        }
        catch (Exception exception) when (exception is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            await DropAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The instance holding the lease now (any process), or null when nobody does. Runs on this lease's session.</summary>
    public async Task<string?> HolderAsync(CancellationToken cancellationToken)
    {
        if (_connection is null)
            return null;
        await using var command = _connection.CreateCommand();
        command.CommandText = "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid " +
                              "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::oid AND l.objid = $2::oid AND l.objsubid = 2 LIMIT 1";
        command.Parameters.Add(new NpgsqlParameter { Value = LockSpace });
        command.Parameters.Add(new NpgsqlParameter { Value = _key });
        var name = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
        return name is null ? null : name.StartsWith(ApplicationPrefix, StringComparison.Ordinal) ? name[ApplicationPrefix.Length..] : name;
    }

    /// <summary>Releases the lease (if held) by ending the session.</summary>
    public async ValueTask DisposeAsync() => await DropAsync().ConfigureAwait(false);

    async Task DropAsync()
    {
        IsHeld = false;
        var connection = _connection;
        _connection = null;
        if (connection is not null)
        {
            try
            {
                await connection.DisposeAsync().ConfigureAwait(false);   // not pooled: the session ends, and its locks with it
            }
            catch (Exception exception) when (exception is NpgsqlException or InvalidOperationException or TimeoutException)
            {
                // The session is gone already.
            }
        }
    }

    /// <summary>The second half of the advisory lock key: FNV-1a-32 of the UTF-8 name, kept positive.</summary>
    internal static int KeyOf(string name)
    {
        var hash = 2166136261u;
        foreach (var b in Encoding.UTF8.GetBytes(name))
        {
            hash ^= b;
            hash *= 16777619u;
        }

        return (int)(hash & 0x7FFFFFFF);
    }
}
