using System.Collections.Concurrent;
using System.Data.Common;
using System.Runtime.CompilerServices;
using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace Integration.Outbox.Writing;

/// <summary>
/// Wakes the relays as soon as outbox messages are committed — never for a rollback, and without making the writers'
/// commits wait on each other.
/// <list type="bullet">
/// <item>A <c>SaveChanges</c> that wrote outbox rows is seen here; the wake-up fires once its rows are committed: right
/// after the save when EF Core ran its own transaction, at the commit of the caller's transaction otherwise (and not at
/// all when that transaction rolls back).</item>
/// <item>Relays in this process are woken directly (<see cref="Committed"/>): no round trip.</item>
/// <item>Relays in other processes are woken by <c>NOTIFY integration_outbox</c>, sent after the commit on a connection
/// of its own, coalesced: while one NOTIFY is in flight, any number of further commits cause exactly one more.</item>
/// </list>
/// The NOTIFY is deliberately not part of the business transaction: PostgreSQL serializes the commits of transactions
/// that NOTIFY (a database-wide lock held through the commit's WAL flush), which halved the writers' throughput under
/// load. A wake-up is only a hint: the relay's poll delivers anything a lost wake-up missed.
/// </summary>
public sealed class OutboxNotifyInterceptor : SaveChangesInterceptor, IDbTransactionInterceptor, IAsyncDisposable
{
    /// <summary>The LISTEN/NOTIFY channel.</summary>
    public const string Channel = "integration_outbox";

    readonly Transactions.ContextTable<PendingCommit> _pending = new();
    readonly ConditionalWeakTable<DbTransaction, DbContext> _uncommitted = [];
    readonly ConcurrentDictionary<string, Notifier> _notifiers = new(StringComparer.Ordinal);
    readonly Lock _attachLock = new();
    IDirectDelivery[] _direct = [];

    /// <summary>Appends a save's outbox rows to its command instead of the change tracker writing them; on the same options (registration adds both).</summary>
    internal OutboxRowAppender Appender { get; } = new();

    /// <summary>Raised after outbox messages were committed by a DbContext using this interceptor (relays in this process listen).</summary>
    public event Action? Committed;

    /// <inheritdoc />
    public override ValueTask<InterceptionResult<int>> SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        if (eventData.Context is not { } context)
            return base.SavingChangesAsync(eventData, result, cancellationToken);
        Reattach(context);
        if (Added(context) is not { } added)
            return base.SavingChangesAsync(eventData, result, cancellationToken);
        // Flow control: while a relay of this process has its direct queue full, an async save waits (bounded) for room
        // instead of writing its rows for the claims, which cost the database more than the direct path.
        foreach (var relay in Volatile.Read(ref _direct))
        {
            var room = relay.WaitForRoomAsync(context, cancellationToken);
            if (!room.IsCompletedSuccessfully)
                return SavingAfterAsync(room, context, added, result);
        }

        Saving(context, added);
        return base.SavingChangesAsync(eventData, result, cancellationToken);
    }

    /// <summary>The async save, once the relay's direct queue has room (or the bounded wait ran out).</summary>
    async ValueTask<InterceptionResult<int>> SavingAfterAsync(ValueTask room, DbContext context, List<OutboxMessage> added, InterceptionResult<int> result)
    {
        await room.ConfigureAwait(false);
        Saving(context, added);
        return result;
    }

    /// <inheritdoc />
    public override InterceptionResult<int> SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        Saving(eventData.Context);
        return base.SavingChanges(eventData, result);
    }

    /// <inheritdoc />
    public override ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        Saved(eventData.Context);
        return base.SavedChangesAsync(eventData, result, cancellationToken);
    }

    /// <inheritdoc />
    public override int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        Saved(eventData.Context);
        return base.SavedChanges(eventData, result);
    }

    /// <inheritdoc />
    public override Task SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        SaveFailed(eventData.Context);
        return base.SaveChangesFailedAsync(eventData, cancellationToken);
    }

    /// <inheritdoc />
    public override void SaveChangesFailed(DbContextErrorEventData eventData)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        SaveFailed(eventData.Context);
        base.SaveChangesFailed(eventData);
    }

    /// <inheritdoc />
    public override Task SaveChangesCanceledAsync(DbContextEventData eventData, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        SaveFailed(eventData.Context);
        return base.SaveChangesCanceledAsync(eventData, cancellationToken);
    }

    /// <inheritdoc />
    public override void SaveChangesCanceled(DbContextEventData eventData)
    {
        ArgumentNullException.ThrowIfNull(eventData);
        SaveFailed(eventData.Context);
        base.SaveChangesCanceled(eventData);
    }

    /// <inheritdoc />
    public void TransactionCommitted(DbTransaction transaction, TransactionEndEventData eventData) => TransactionEnded(transaction, committed: true);

    /// <inheritdoc />
    public Task TransactionCommittedAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        TransactionEnded(transaction, committed: true);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public void TransactionRolledBack(DbTransaction transaction, TransactionEndEventData eventData) => TransactionEnded(transaction, committed: false);

    /// <inheritdoc />
    public Task TransactionRolledBackAsync(DbTransaction transaction, TransactionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        TransactionEnded(transaction, committed: false);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public void TransactionFailed(DbTransaction transaction, TransactionErrorEventData eventData) => TransactionEnded(transaction, committed: false);

    /// <inheritdoc />
    public Task TransactionFailedAsync(DbTransaction transaction, TransactionErrorEventData eventData, CancellationToken cancellationToken = default)
    {
        TransactionEnded(transaction, committed: false);
        return Task.CompletedTask;
    }

    /// <summary>Closes the NOTIFY connections.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var notifier in _notifiers.Values)
            await notifier.DisposeAsync().ConfigureAwait(false);
        _notifiers.Clear();
    }

    /// <summary>A relay in this process takes the commits of its DbContext directly (<see cref="IDirectDelivery"/>).</summary>
    internal void Attach(IDirectDelivery relay)
    {
        lock (_attachLock)
            _direct = [.. _direct, relay];
    }

    internal void Detach(IDirectDelivery relay)
    {
        lock (_attachLock)
            _direct = [.. _direct.Where(r => !ReferenceEquals(r, relay))];
    }

    /// <summary>
    /// Before a save: notes its new outbox rows. The first save of a commit decides whether the commit goes to a relay of
    /// this process directly: then its rows are written leased to that relay (so no other relay claims them while it sends
    /// them), and every later save in the same database transaction does the same (one transaction never takes two paths).
    /// </summary>
    void Saving(DbContext? context)
    {
        if (context is null)
            return;
        Reattach(context);
        if (Added(context) is { } added)
            Saving(context, added);
    }

    void Saving(DbContext context, List<OutboxMessage> added)
    {
        Appender.TakeSent(context);   // a mark left by an earlier save (or a query's) does not count for this one
        var transaction = context.Database.CurrentTransaction?.GetDbTransaction();
        if (!_pending.TryGetValue(context, out var pending) || pending.Transaction is null || !ReferenceEquals(pending.Transaction, transaction))
        {
            pending = new PendingCommit();
            foreach (var relay in Volatile.Read(ref _direct))
            {
                if (relay.TryLease(context, out pending.Token, out pending.LeasedUntil))
                {
                    pending.Relay = relay;
                    break;
                }
            }

            _pending.AddOrUpdate(context, pending);
        }

        foreach (var message in added)
        {
            if (pending.Relay is not null)
            {
                message.LockToken = pending.Token;
                message.LockedUntil = pending.LeasedUntil;
                message.Attempts = 1;
            }
            else if (message.LockToken is not null)
            {
                // Leased by an earlier attempt of this save that failed: this attempt goes through the claim.
                message.LockToken = null;
                message.LockedUntil = null;
                message.Attempts = 0;
            }
        }

        pending.Saving = added;
        // Outside the tracker from here (OutboxRowAppender): the save's first command carries them.
        if (Appender.IsOn(context) && OutboxRowAppender.Eligible(context))
        {
            foreach (var message in added)
                context.Entry(message).State = EntityState.Detached;
            Appender.Append(context, added);
        }
    }

    /// <summary>The rows a failed or cancelled save had taken out of the tracker go back in, Added, so the next save writes them.</summary>
    void Reattach(DbContext context)
    {
        if (Appender.End(context) is not { } rows)
            return;
        foreach (var message in rows)
        {
            if (context.Entry(message).State == EntityState.Detached)
                context.Entry(message).State = EntityState.Added;
        }
    }

    /// <summary>The outbox rows the save is about to insert; null when none.</summary>
    static List<OutboxMessage>? Added(DbContext context)
    {
        List<OutboxMessage>? added = null;
        // Without a change detection pass of its own (the save runs one right after this, over every tracked entity): an outbox
        // row is Added by IOutbox's Add, never by a property change, and has no navigation that could bring one in.
        var tracker = context.ChangeTracker;
        var detect = tracker.AutoDetectChangesEnabled;
        tracker.AutoDetectChangesEnabled = false;
        try
        {
            foreach (var entry in tracker.Entries<OutboxMessage>())
            {
                if (entry.State == EntityState.Added)
                    (added ??= []).Add(entry.Entity);
            }
        }
        finally
        {
            tracker.AutoDetectChangesEnabled = detect;
        }

        return added;
    }

    void Saved(DbContext? context)
    {
        if (context is null || !_pending.TryGetValue(context, out var pending) || pending.Saving is null)
            return;
        if (Appender.IsOn(context) && !Appender.TakeSent(context))
        {
            // A save that sent no command (another interceptor suppressed it) wrote nothing, tracked or appended: nothing
            // is handed over, and its rows stay (or are again) Added for the next save.
            SaveFailed(context);
            return;
        }

        Appender.End(context);   // appended rows, if any, were written by the command

        pending.Messages.AddRange(pending.Saving);
        pending.Saving = null;
        if (context.Database.CurrentTransaction is { } open)
        {
            // The caller's transaction: wait for its commit.
            pending.Transaction = open.GetDbTransaction();
            _uncommitted.AddOrUpdate(pending.Transaction, context);
        }
        else
        {
            // EF Core's own transaction, or the one command's implicit one, has committed.
            _pending.Remove(context);
            HandOver(context, pending);
        }
    }

    void SaveFailed(DbContext? context)
    {
        if (context is not null)
            Reattach(context);
        if (context is not null && _pending.TryGetValue(context, out var pending))
        {
            pending.Saving = null;
            if (pending.Messages.Count == 0)
                _pending.Remove(context);
        }
    }

    void TransactionEnded(DbTransaction transaction, bool committed)
    {
        if (transaction is null || !_uncommitted.TryGetValue(transaction, out var context))
            return;
        _uncommitted.Remove(transaction);
        if (!_pending.TryGetValue(context, out var pending) || !ReferenceEquals(pending.Transaction, transaction))
            return;
        _pending.Remove(context);
        if (committed)
            HandOver(context, pending);
    }

    /// <summary>
    /// A rollback to a savepoint may have taken some of the transaction's outbox rows with it: which ones is not known here,
    /// so the relay checks which rows exist before it sends them directly.
    /// </summary>
    void RolledBackToSavepoint(DbTransaction transaction)
    {
        if (transaction is not null && _uncommitted.TryGetValue(transaction, out var context) && _pending.TryGetValue(context, out var pending))
            pending.Verify = true;
    }

    void IDbTransactionInterceptor.RolledBackToSavepoint(DbTransaction transaction, TransactionEventData eventData) => RolledBackToSavepoint(transaction);

    Task IDbTransactionInterceptor.RolledBackToSavepointAsync(DbTransaction transaction, TransactionEventData eventData, CancellationToken cancellationToken)
    {
        RolledBackToSavepoint(transaction);
        return Task.CompletedTask;
    }

    void HandOver(DbContext context, PendingCommit pending)
    {
        if (pending.Relay is null)
        {
            Wake(context);
            return;
        }

        // Copies: the DbContext may change its tracked entities after this; the relay sends what was committed.
        var messages = new OutboxMessage[pending.Messages.Count];
        for (var i = 0; i < messages.Length; i++)
            messages[i] = pending.Messages[i].Copy();
        pending.Relay.Deliver(messages, pending.Verify);
    }

    void Wake(DbContext context)
    {
        Committed?.Invoke();
        if (context.Database.GetDbConnection() is not NpgsqlConnection connection)
            return;
        // Keyed by the connection string as the connection shows it (after its first open, without the password): one
        // dictionary lookup per commit, no parsing.
        _notifiers.GetOrAdd(connection.ConnectionString, static (_, source) => new Notifier(source), connection).Raise();
    }

    /// <summary>The outbox rows of one commit in the making, and whether a relay of this process takes them directly.</summary>
    sealed class PendingCommit
    {
        public readonly List<OutboxMessage> Messages = [];
        public List<OutboxMessage>? Saving;
        public IDirectDelivery? Relay;
        public Guid Token;
        public DateTimeOffset LeasedUntil;
        public DbTransaction? Transaction;
        public bool Verify;
    }

    /// <summary>Sends coalesced NOTIFYs on a connection of its own.</summary>
    sealed class Notifier : IAsyncDisposable
    {
        const int Idle = 0, Running = 1, RunAgain = 2;

        readonly NpgsqlConnection _template;
        readonly SemaphoreSlim _gate = new(1, 1);
        NpgsqlConnection? _connection;
        int _state;
        bool _disposed;

        // A clone keeps the credentials (a connection's own ConnectionString may have dropped the password once opened).
        public Notifier(NpgsqlConnection source) => _template = source.CloneWith(source.ConnectionString);

        public void Raise()
        {
            while (true)
            {
                var state = Volatile.Read(ref _state);
                if (state == RunAgain)
                    return; // the running loop will send one more, after this commit
                if (Interlocked.CompareExchange(ref _state, state == Idle ? Running : RunAgain, state) != state)
                    continue;
                if (state == Idle)
                    _ = Task.Run(RunAsync);
                return;
            }
        }

        async Task RunAsync()
        {
            while (true)
            {
                await NotifyAsync().ConfigureAwait(false);
                if (Interlocked.CompareExchange(ref _state, Idle, Running) == Running)
                    return;
                Volatile.Write(ref _state, Running); // commits arrived during that NOTIFY: one more covers them all
            }
        }

        async Task NotifyAsync()
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_disposed)
                    return;
                if (_connection is null)
                {
                    var connection = _template.CloneWith(_template.ConnectionString);
                    await connection.OpenAsync().ConfigureAwait(false);
                    // A NOTIFY is a transaction of its own; it need not wait for its WAL flush (it carries no data).
                    await using (var setting = new NpgsqlCommand("SET synchronous_commit = off", connection))
                        await setting.ExecuteNonQueryAsync().ConfigureAwait(false);
                    _connection = connection;
                }

                await using var notify = new NpgsqlCommand($"SELECT pg_notify('{Channel}', '')", _connection) { CommandTimeout = 5 };
                await notify.ExecuteNonQueryAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Whatever failed (the database unreachable, the connection broken), relays elsewhere find the messages by
                // polling; this loop must never die with its state left Running. Reconnect next time.
                if (_connection is not null)
                    await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = null;
            }
            finally
            {
                _gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                _disposed = true;
                if (_connection is not null)
                    await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = null;
                await _template.DisposeAsync().ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }
    }
}
