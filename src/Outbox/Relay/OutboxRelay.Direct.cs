using System.Threading.Channels;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integration.Outbox.Relay;

/// <summary>
/// Direct delivery: what this process commits is sent from memory right after the commit, without claiming it from the
/// table (see <see cref="IDirectDelivery"/>). Each commit's messages go out as one chain, in write order, as soon as
/// they are handed over (up to <see cref="OutboxOptions.DeliveryConcurrency"/> chains at once); the confirmed ones are marked
/// delivered by one statement for everything confirmed since the last (one mark in flight at a time). Whatever is not
/// marked comes back through the claims: a failed send is marked for retry in 2 s, a crash leaves the lease to run out.
/// </summary>
sealed partial class OutboxRelay<TDbContext> : IDirectDelivery
{
    readonly Channel<Handed> _handed = Channel.CreateUnbounded<Handed>(new UnboundedChannelOptions { SingleReader = true });
    readonly SemaphoreSlim _directMarkSignal = new(0, 1);
    readonly Lock _directLock = new();
    List<(Guid TransactionId, Guid MessageId)> _directDelivered = [];
    List<(Guid TransactionId, Guid MessageId, string Error)> _directFailed = [];
    Guid _directToken = Guid.NewGuid();
    volatile bool _directOpen;
    int _directQueued;
    int _directFailing;
    long _directPausedUntil;
    int _directLimit;
    TimeSpan _directLease;
    string? _host;
    int _port;
    string? _database;

    readonly record struct Handed(OutboxMessage[] Messages, bool Verify);

    /// <summary>A claim round delivered everything it claimed (or found nothing left): direct delivery resumes after a failure.</summary>
    void ClaimsDelivered()
    {
        if (Volatile.Read(ref _directPausedUntil) == long.MaxValue)
            Volatile.Write(ref _directPausedUntil, 0);
    }

    /// <summary>Where this relay's DbContext writes: only commits to that database are taken directly.</summary>
    void NoteDatabase(DbContext db)
    {
        if (db.Database.GetDbConnection() is NpgsqlConnection connection)
            (_host, _port, _database) = (connection.Host, connection.Port, connection.Database);
    }

    /// <inheritdoc />
    public bool TryLease(DbContext context, out Guid token, out DateTimeOffset until)
    {
        token = _directToken;
        until = default;
        if (!_directOpen || context.GetType() != typeof(TDbContext) || Volatile.Read(ref _directQueued) >= _directLimit
            || System.Transactions.Transaction.Current is not null   // the ambient transaction commits later, where this cannot see it
            || context.Database.GetDbConnection() is not NpgsqlConnection connection || connection.Port != _port
            || !string.Equals(connection.Host, _host, StringComparison.Ordinal) || !string.Equals(connection.Database, _database, StringComparison.Ordinal))
            return false;
        var now = Time.GetUtcNow();
        if (now.UtcTicks < Volatile.Read(ref _directPausedUntil))
            return false;
        until = now + _directLease;
        return true;
    }

    /// <summary>Longest wait of a save for room in the direct queue (<see cref="WaitForRoomAsync"/>).</summary>
    static readonly TimeSpan RoomWait = TimeSpan.FromSeconds(1);

    TaskCompletionSource _room = new(TaskCreationOptions.RunContinuationsAsynchronously);
    int _roomWaiters;

    /// <inheritdoc />
    public ValueTask WaitForRoomAsync(DbContext context, CancellationToken cancellationToken)
    {
        if (!_directOpen || context.GetType() != typeof(TDbContext) || Volatile.Read(ref _directQueued) < _directLimit
            || Time.GetUtcNow().UtcTicks < Volatile.Read(ref _directPausedUntil))
            return ValueTask.CompletedTask;
        return new ValueTask(WaitForRoomCoreAsync(cancellationToken));
    }

    async Task WaitForRoomCoreAsync(CancellationToken cancellationToken)
    {
        var deadline = Time.GetTimestamp() + (long)(RoomWait.TotalSeconds * Time.TimestampFrequency);
        Interlocked.Increment(ref _roomWaiters);
        try
        {
            while (_directOpen && Time.GetUtcNow().UtcTicks >= Volatile.Read(ref _directPausedUntil))
            {
                // Waiter first, then the signal, then the check: a chain that ends after the check finds the waiter and sets
                // this signal (or a later one, after this one was already set).
                var room = Volatile.Read(ref _room);
                if (Volatile.Read(ref _directQueued) < _directLimit)
                    return;
                var left = Time.GetElapsedTime(Time.GetTimestamp(), deadline);
                if (left <= TimeSpan.Zero)
                    return;
                try
                {
                    await room.Task.WaitAsync(left, Time, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    return;   // the save goes on; TryLease decides (the claims take it while the queue is full)
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _roomWaiters);
        }
    }

    void SignalRoom()
    {
        if (Volatile.Read(ref _roomWaiters) > 0 && Volatile.Read(ref _directQueued) < _directLimit)
            Interlocked.Exchange(ref _room, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    /// <inheritdoc />
    public void Deliver(OutboxMessage[] messages, bool verify)
    {
        Interlocked.Add(ref _directQueued, messages.Length);
        if (!_handed.Writer.TryWrite(new Handed(messages, verify)))
            Interlocked.Add(ref _directQueued, -messages.Length); // stopped: the lease brings them back to the claims
    }

    async Task DirectLoopAsync(OutboxOptions settings, CancellationToken stoppingToken)
    {
        _directLimit = settings.DirectDeliveryLimit;
        _directLease = settings.LockDuration;
        var gate = new SemaphoreSlim(settings.DeliveryConcurrency);
        var marking = Task.Run(() => DirectMarkLoopAsync(settings, stoppingToken), CancellationToken.None);
        _directOpen = true;
        Commits.Attach(this);
        try
        {
            await WaitForBusAsync(stoppingToken).ConfigureAwait(false);
            while (await _handed.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                while (_handed.Reader.TryRead(out var handed))
                {
                    await gate.WaitAsync(stoppingToken).ConfigureAwait(false);
                    _ = DeliverDirectAsync(handed, gate, settings, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            _directOpen = false;
            Commits.Detach(this);
            _handed.Writer.TryComplete();
            // The chains in flight end (confirmed, or cancelled by the stop); then the last mark; then what was handed over
            // and not delivered is released at once for any relay, instead of after its lease.
            for (var i = 0; i < settings.DeliveryConcurrency; i++)
            {
                if (!await gate.WaitAsync(settings.SendTimeout + TimeSpan.FromSeconds(2), CancellationToken.None).ConfigureAwait(false))
                    break;
            }

            await marking.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await MarkDirectAsync(settings).ConfigureAwait(false);
            await ReleaseDirectAsync(settings).ConfigureAwait(false);
        }
    }

    async Task DeliverDirectAsync(Handed handed, SemaphoreSlim gate, OutboxOptions settings, CancellationToken cancellationToken)
    {
        var chain = handed.Messages;
        var sent = 0;
        var failed = false;
        try
        {
            if (handed.Verify)
                chain = await StillLeasedAsync(chain, cancellationToken).ConfigureAwait(false);
            // A chain whose lease could run out while it is sent is left to the claims: no relay sends a row another may hold.
            if (chain.Length == 0 || chain[0].LockedUntil - Time.GetUtcNow() < settings.SendTimeout + TimeSpan.FromSeconds(1))
                return;
            for (; sent < chain.Length; sent++)
                await SendAsync(chain[sent], settings.SendTimeout, cancellationToken, direct: true).ConfigureAwait(false);
            if (Volatile.Read(ref _directFailing) == 1 && Interlocked.Exchange(ref _directFailing, 0) == 1)
                LogDirectRecovered(Logger);
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            failed = true;
            Metrics.Failures.Add(1);
            // Commits go through the claims until a claim round delivers again: the claims back off while the broker is
            // unreachable, where direct sends would keep every commit's publish in flight during the recovery.
            Volatile.Write(ref _directPausedUntil, long.MaxValue);
            if (Interlocked.Exchange(ref _directFailing, 1) == 0)
                LogDirectFailed(Logger, exception, chain[0].TransactionId);
            lock (_directLock)
            {
                for (var i = sent; i < chain.Length; i++)
                    _directFailed.Add((chain[i].TransactionId, chain[i].MessageId, exception.Message));
            }
        }
        finally
        {
            if (sent > 0)
            {
                lock (_directLock)
                {
                    for (var i = 0; i < sent; i++)
                        _directDelivered.Add((chain[i].TransactionId, chain[i].MessageId));
                }
            }

            if (sent > 0 || failed)
                SignalDirectMark();
            Interlocked.Add(ref _directQueued, -handed.Messages.Length);
            SignalRoom();
            gate.Release();
        }
    }

    void SignalDirectMark()
    {
        try
        {
            if (_directMarkSignal.CurrentCount == 0)
                _directMarkSignal.Release();
        }
        catch (SemaphoreFullException)
        {
        }
    }

    /// <summary>One mark in flight at a time: each covers everything confirmed since the previous one.</summary>
    async Task DirectMarkLoopAsync(OutboxOptions settings, CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await _directMarkSignal.WaitAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (!await MarkDirectAsync(settings).ConfigureAwait(false))
                await Task.Delay(TimeSpan.FromSeconds(1), Time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    async Task<bool> MarkDirectAsync(OutboxOptions settings)
    {
        List<(Guid TransactionId, Guid MessageId)> delivered;
        List<(Guid TransactionId, Guid MessageId, string Error)> failed;
        lock (_directLock)
        {
            (delivered, failed) = (_directDelivered, _directFailed);
            if (delivered.Count == 0 && failed.Count == 0)
                return true;
            (_directDelivered, _directFailed) = ([], []);
        }

        try
        {
            await MarkAsync(_directToken, delivered, failed, settings).ConfigureAwait(false);
            return true;
        }
        catch (Exception exception)
        {
            // Tried again (a row another relay took over after its lease is not matched by the token: nothing is overwritten).
            LogDirectMarkFailed(Logger, exception, delivered.Count + failed.Count);
            lock (_directLock)
            {
                _directDelivered.AddRange(delivered);
                _directFailed.AddRange(failed);
            }

            SignalDirectMark();
            return false;
        }
    }

    /// <summary>After a rollback to a savepoint: the handed-over messages whose rows exist (committed, still leased to this relay).</summary>
    async Task<OutboxMessage[]> StillLeasedAsync(OutboxMessage[] messages, CancellationToken cancellationToken)
    {
        await using var scope = Scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
        var connection = (NpgsqlConnection)db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(
            $"SELECT m.transaction_id, m.message_id FROM {Tables(db).Messages} m JOIN unnest(@transactions, @messages) AS d(transaction_id, message_id) " +
            "ON m.transaction_id = d.transaction_id AND m.message_id = d.message_id WHERE m.lock_token = @token AND m.delivered_at IS NULL", connection);
        command.Parameters.AddWithValue("transactions", messages.Select(m => m.TransactionId).ToArray());
        command.Parameters.AddWithValue("messages", messages.Select(m => m.MessageId).ToArray());
        command.Parameters.AddWithValue("token", _directToken);
        var existing = new HashSet<(Guid, Guid)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                existing.Add((reader.GetGuid(0), reader.GetGuid(1)));
        }

        return [.. messages.Where(m => existing.Contains((m.TransactionId, m.MessageId)))];
    }

    /// <summary>At the stop: what was handed over and not delivered is claimable at once (bounded: else the lease frees it).</summary>
    async Task ReleaseDirectAsync(OutboxOptions settings)
    {
        try
        {
            using var timeout = new CancellationTokenSource(settings.SendTimeout);
            await using var scope = Scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            var sql = $"UPDATE {Tables(db).Messages} SET lock_token = NULL, locked_until = NULL WHERE lock_token = {{0}} AND delivered_at IS NULL";
            await db.Database.ExecuteSqlRawAsync(sql, [_directToken], timeout.Token).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            LogDirectReleaseFailed(Logger, exception.Message, settings.LockDuration.TotalSeconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: direct delivery of transaction {TransactionId} failed; its messages and later failures are retried through the claims")]
    static partial void LogDirectFailed(ILogger logger, Exception exception, Guid transactionId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Outbox relay: direct delivery works again")]
    static partial void LogDirectRecovered(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: marking {Count} directly delivered message(s) failed; retrying")]
    static partial void LogDirectMarkFailed(ILogger logger, Exception exception, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: releasing undelivered direct messages at the stop failed ({Reason}); they are claimable after their lease ({Seconds} s)")]
    static partial void LogDirectReleaseFailed(ILogger logger, string reason, double seconds);
}
