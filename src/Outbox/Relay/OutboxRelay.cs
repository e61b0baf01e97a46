using System.Diagnostics;
using System.Text.Json;
using Integration.Outbox.Leases;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Integration.Outbox.Relay;

/// <summary>
/// Delivers committed outbox messages. Claims a batch of messages with <c>FOR UPDATE SKIP LOCKED</c> under a lease (so
/// several relays on one database never deliver the same message at once, and a dead relay's claims return), never a
/// message without the earlier undelivered ones of its transaction; sends the whole batch at once, each transaction's
/// messages in the order they were written (the next after the previous one's confirm), and marks the confirmed ones
/// delivered in one statement. Wakes on <c>LISTEN integration_outbox</c>; polls as the fallback; backs off while the broker
/// or database is down. Delivery is at-least-once: a crash between confirm and mark re-sends with the same MessageId.
/// </summary>
sealed partial class OutboxRelay<TDbContext>(IServiceScopeFactory scopes, IBus bus, IOptions<OutboxOptions> options, OutboxStatistics statistics,
    OutboxMetrics metrics, TimeProvider time, ILogger<OutboxRelay<TDbContext>> logger, OutboxNotifyInterceptor commits) : BackgroundService
    where TDbContext : DbContext
{
    /// <summary>Message types by stored name: resolving an assembly-qualified name is not free, and a relay sees few types.</summary>
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Type> _types = new(StringComparer.Ordinal);

    readonly SemaphoreSlim _wake = new(0, 1);
    Task _marking = Task.CompletedTask;
    bool _lastBatchFull;
    DateTimeOffset _nextCleanup = DateTimeOffset.MinValue;
    OutboxTables? _tables;

    TimeProvider Time => time;
    ILogger Logger => logger;
    OutboxMetrics Metrics => metrics;
    OutboxNotifyInterceptor Commits => commits;
    IServiceScopeFactory Scopes => scopes;

    /// <summary>Wakes the relay now (used by tests and by the listener).</summary>
    public void Wake()
    {
        try
        {
            if (_wake.CurrentCount == 0)
                _wake.Release();
        }
        catch (SemaphoreFullException)
        {
        }
    }

    /// <summary>
    /// Before anything starts: the DbContext must be resolvable, map the outbox tables and carry this container's
    /// <see cref="OutboxNotifyInterceptor"/> (added by <c>AddIntegrationOutbox</c> through <c>ConfigureDbContext</c>; a DbContext
    /// registered some other way does not get it). Each failure stops the host with the call that fixes it.
    /// </summary>
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        using (var scope = scopes.CreateScope())
        {
            var name = typeof(TDbContext).Name;
            var db = scope.ServiceProvider.GetService<TDbContext>()
                ?? throw new InvalidOperationException($"AddIntegrationOutbox<{name}>: {name} is not registered; call services.AddDbContext<{name}>(...)");
            _tables = OutboxTables.Of(db);
            NoteDatabase(db);
            var interceptors = db.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.Interceptors ?? [];
            if (!interceptors.Contains(commits))
            {
                throw new InvalidOperationException($"AddIntegrationOutbox<{name}>: {name}'s options do not have the outbox's OutboxNotifyInterceptor, so commits would " +
                    $"not wake the relay (it is added to options built by AddDbContext<{name}>/AddDbContextFactory<{name}>). Register {name} with " +
                    $"services.AddDbContext<{name}>(...), or add options.AddInterceptors(serviceProvider.GetRequiredService<OutboxNotifyInterceptor>()) where its options are built");
            }
        }

        return base.StartAsync(cancellationToken);
    }

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!settings.RunRelay)
            return;
        // This process's own commits, sent from memory (no claim); the claims deliver everything else and whatever that misses.
        // Taken from the start (the first await comes after the relay is attached), sent once the bus is up.
        var direct = settings.DirectDelivery ? DirectLoopAsync(settings, stoppingToken) : Task.CompletedTask;
        await WaitForBusAsync(stoppingToken).ConfigureAwait(false);
        commits.Committed += Wake; // commits in this process wake it directly; other processes' by NOTIFY
        try
        {
            await RunAsync(settings, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            commits.Committed -= Wake;
            await direct.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    OutboxTables Tables(DbContext db) => _tables ??= OutboxTables.Of(db);

    async Task RunAsync(OutboxOptions settings, CancellationToken stoppingToken)
    {
        var listener = Task.Run(() => ListenAsync(stoppingToken), stoppingToken);
        // Off the delivery path: a commit never waits behind the statistics and cleanup statements.
        var housekeeping = Task.Run(() => HousekeepingLoopAsync(settings, stoppingToken), stoppingToken);
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var busy = await DeliverBatchAsync(settings, stoppingToken).ConfigureAwait(false);
                failures = 0;
                if (!busy)
                    await _wake.WaitAsync(settings.PollInterval, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                failures++;
                var delay = TimeSpan.FromMilliseconds(Math.Min(10_000, 250 * Math.Pow(2, Math.Min(failures, 6))));
                LogRelayFailed(logger, exception, failures, delay.TotalSeconds);
                await Task.Delay(delay, time, stoppingToken).ConfigureAwait(false);
            }
        }

        // The last batch's mark runs to its end (not cancelled by the stop): what was confirmed is recorded as delivered.
        await MarkedAsync().ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await listener.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await housekeeping.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    async Task HousekeepingLoopAsync(OutboxOptions settings, CancellationToken stoppingToken)
    {
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await HousekeepingAsync(settings, stoppingToken).ConfigureAwait(false);
                failures = 0;
                var wait = _nextCleanup - time.GetUtcNow();
                await Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, time, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception exception)
            {
                failures++;
                var delay = TimeSpan.FromMilliseconds(Math.Min(10_000, 250 * Math.Pow(2, Math.Min(failures, 6))));
                LogHousekeepingFailed(logger, exception, failures, delay.TotalSeconds);
                await Task.Delay(delay, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>
    /// Delivers nothing until the bus is started, so this host's own subscriptions are bound first: RabbitMQ drops a
    /// publish that no queue is bound to. Gives up waiting after a minute (the broker may be down; sends then retry).
    /// </summary>
    async Task WaitForBusAsync(CancellationToken cancellationToken)
    {
        if (bus is not IBusControl control)
            return;
        var deadline = time.GetUtcNow().AddMinutes(1);
        while (!cancellationToken.IsCancellationRequested && time.GetUtcNow() < deadline && control.CheckHealth().Status != BusHealthStatus.Healthy)
            await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Claims, sends and marks one batch; false when there was nothing to claim (then the loop waits for a wake-up).</summary>
    async Task<bool> DeliverBatchAsync(OutboxOptions settings, CancellationToken cancellationToken)
    {
        var token = Guid.NewGuid();
        var messages = new List<OutboxMessage>();
        await using (var scope = scopes.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            await db.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand(ClaimSql(Tables(db)), connection);
            command.Parameters.AddWithValue("token", token);
            command.Parameters.AddWithValue("lease", settings.LockDuration);
            command.Parameters.AddWithValue("batch", settings.BatchSize);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                messages.Add(new OutboxMessage
                {
                    Sequence = reader.GetInt64(0),
                    TransactionId = reader.GetGuid(1),
                    MessageId = reader.GetGuid(2),
                    Destination = reader.IsDBNull(3) ? null : reader.GetString(3),
                    MessageType = reader.GetString(4),
                    Body = reader.GetString(5),
                    CorrelationId = reader.IsDBNull(6) ? null : reader.GetGuid(6),
                    CreatedAt = reader.GetFieldValue<DateTimeOffset>(7),
                    TraceParent = reader.IsDBNull(8) ? null : reader.GetString(8),
                    TraceState = reader.IsDBNull(9) ? null : reader.GetString(9),
                    Envelope = reader.IsDBNull(10) ? null : reader.GetString(10),
                });
            }
        }

        if (messages.Count == 0)
        {
            ClaimsDelivered();
            // A full batch may have cut a transaction: the rest is held back by the mark in flight; once it lands, claim again.
            if (!_lastBatchFull || _marking.IsCompleted)
                return false;
            _lastBatchFull = false;
            await MarkedAsync().ConfigureAwait(false);
            return true;
        }

        var previousFull = _lastBatchFull;
        _lastBatchFull = messages.Count >= settings.BatchSize;

        // Every transaction's claimed messages as one chain, in write order (RETURNING has no order of its own).
        messages.Sort(static (a, b) => a.Sequence.CompareTo(b.Sequence));
        var chains = new Dictionary<Guid, List<OutboxMessage>>();
        foreach (var message in messages)
        {
            if (!chains.TryGetValue(message.TransactionId, out var chain))
                chains.Add(message.TransactionId, chain = []);
            chain.Add(message);
        }

        // The whole batch is in flight at once: the chains run concurrently (up to DeliveryConcurrency), each one awaiting
        // its message's confirm before sending the next, so one transaction's messages still reach the broker in order.
        var delivered = new List<(Guid TransactionId, Guid MessageId)>(messages.Count);
        var failed = new List<(Guid TransactionId, Guid MessageId, string Error)>();
        using var gate = chains.Count > settings.DeliveryConcurrency ? new SemaphoreSlim(settings.DeliveryConcurrency) : null;
        var failedTransactions = 0;
        string? firstError = null;
        async Task DeliverChainAsync(List<OutboxMessage> chain)
        {
            if (gate is not null)
                await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            var sent = 0;
            try
            {
                for (; sent < chain.Count; sent++)
                    await SendAsync(chain[sent], settings.SendTimeout, cancellationToken, direct: false).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                metrics.Failures.Add(1);
                lock (failed)
                {
                    failedTransactions++;
                    firstError ??= exception.Message;
                    // The failed message and the ones after it (not sent: they must not overtake it) wait for the retry.
                    for (var i = sent; i < chain.Count; i++)
                        failed.Add((chain[i].TransactionId, chain[i].MessageId, exception.Message));
                }
            }
            finally
            {
                gate?.Release();
                lock (failed)
                {
                    for (var i = 0; i < sent; i++)
                        delivered.Add((chain[i].TransactionId, chain[i].MessageId));
                }
            }
        }

        var sending = new List<Task>(chains.Count);
        foreach (var chain in chains.Values)
            sending.Add(DeliverChainAsync(chain));
        try
        {
            await Task.WhenAll(sending).ConfigureAwait(false);
        }
        finally
        {
            // Pipelined: the next claim does not wait for this mark (these messages stay claimed under the lease until it
            // lands, so no relay claims them again); one mark in flight at a time, and its failure fails the next round.
            // Also on a stop: what was confirmed is marked.
            await MarkedAsync().ConfigureAwait(false);
            _marking = MarkAsync(token, delivered, failed, settings);
        }

        if (failed.Count == 0)
            ClaimsDelivered();
        if (failed.Count > 0)
        {
            await MarkedAsync().ConfigureAwait(false);
            throw new OutboxDeliveryException($"{failedTransactions} of {chains.Count} outbox transaction(s) could not be delivered: {firstError}");
        }

        // Claim again at once after a full batch (more may wait) or one that followed a full batch (a transaction it cut may
        // now be claimable). After a partial batch the relay has drained what it could claim: it waits for the next wake-up
        // (a commit during this batch has already released it) instead of sending a claim that finds nothing.
        return _lastBatchFull || previousFull;
    }

    /// <summary>
    /// One statement: lock the oldest claimable messages (SKIP LOCKED: what another relay holds or is claiming is passed
    /// over; a message behind a leased one of its transaction is not even a candidate, so the batch fills with other
    /// transactions), keep those whose earlier undelivered siblings are all among them (so no relay ever holds a message while an
    /// earlier one of its transaction is elsewhere or unclaimed: per-transaction order holds across relays, and a
    /// transaction larger than a batch goes out as successive prefixes), lease them to this claim and return them.
    /// </summary>
    static string ClaimSql(OutboxTables tables) => $"""
        WITH candidates AS (
            SELECT m.sequence, m.transaction_id FROM {tables.Messages} m
            WHERE m.delivered_at IS NULL AND (m.locked_until IS NULL OR m.locked_until < now())
              AND NOT EXISTS (SELECT 1 FROM {tables.Messages} h
                              WHERE h.transaction_id = m.transaction_id AND h.sequence < m.sequence AND h.delivered_at IS NULL
                                AND h.locked_until >= now())
            ORDER BY m.sequence LIMIT @batch FOR UPDATE OF m SKIP LOCKED),
        claimable AS (
            SELECT c.sequence FROM candidates c
            WHERE NOT EXISTS (SELECT 1 FROM {tables.Messages} e
                              WHERE e.transaction_id = c.transaction_id AND e.sequence < c.sequence AND e.delivered_at IS NULL
                                AND e.sequence NOT IN (SELECT sequence FROM candidates)))
        UPDATE {tables.Messages} m SET lock_token = @token, locked_until = now() + @lease, attempts = m.attempts + 1
        FROM claimable k WHERE m.sequence = k.sequence
        RETURNING m.sequence, m.transaction_id, m.message_id, m.destination, m.message_type, m.body, m.correlation_id, m.created_at,
                  m.trace_parent, m.trace_state, m.envelope
        """;

    /// <summary>Waits for the mark in flight; a failed mark fails this round once (its messages return after the lease).</summary>
    Task MarkedAsync()
    {
        var marking = _marking;
        _marking = Task.CompletedTask;
        return marking;
    }

    /// <summary>
    /// Records the confirmed messages as delivered and the failed ones with their error, for this claim only (a claim
    /// that expired and was taken over marks nothing): one round trip for the batch. With a
    /// <see cref="OutboxOptions.RetentionPeriod"/> of zero the delivered rows are deleted right there instead of marked and
    /// deleted by the cleanup later: one small delete record per row instead of a new row version and its index entries.
    /// </summary>
    /// <remarks>
    /// By (transaction_id, message_id), which the partial index on (transaction_id, sequence) of the undelivered rows finds:
    /// a row the writer appended to its save's command reaches direct delivery without its sequence.
    /// </remarks>
    async Task MarkAsync(Guid token, List<(Guid TransactionId, Guid MessageId)> delivered, List<(Guid TransactionId, Guid MessageId, string Error)> failed,
        OutboxOptions settings)
    {
        if (delivered.Count == 0 && failed.Count == 0)
            return;
        // Not cancelled by the host's stop (a confirmed batch left unmarked would be sent again after the lease), but
        // bounded: with the database gone it gives up, and the lease brings the batch back.
        using var timeoutSource = new CancellationTokenSource(settings.SendTimeout);
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
        var tables = Tables(db);
        var statements = new List<string>(2);
        const string Delivered = "unnest({0}, {1}) AS d(transaction_id, message_id) " +
                                 "WHERE m.transaction_id = d.transaction_id AND m.message_id = d.message_id AND m.lock_token = {2} AND m.delivered_at IS NULL";
        if (delivered.Count > 0)
        {
            statements.Add(settings.RetentionPeriod == TimeSpan.Zero
                ? $"DELETE FROM {tables.Messages} m USING " + Delivered
                : $"UPDATE {tables.Messages} m SET delivered_at = now(), lock_token = NULL, locked_until = NULL, last_error = NULL FROM " + Delivered);
        }

        if (failed.Count > 0)
        {
            // Keep the claim a little while (backoff), then any relay may retry them.
            statements.Add($"UPDATE {tables.Messages} m SET locked_until = now() + {{3}}, last_error = f.error " +
                           "FROM unnest({4}, {5}, {6}) AS f(transaction_id, message_id, error) " +
                           "WHERE m.transaction_id = f.transaction_id AND m.message_id = f.message_id AND m.lock_token = {2} AND m.delivered_at IS NULL");
        }

        object[] parameters =
        [
            delivered.Select(d => d.TransactionId).ToArray(), delivered.Select(d => d.MessageId).ToArray(), token, TimeSpan.FromSeconds(2),
            failed.Select(f => f.TransactionId).ToArray(), failed.Select(f => f.MessageId).ToArray(),
            failed.Select(f => f.Error.Length > 2000 ? f.Error[..2000] : f.Error).ToArray(),
        ];
        await db.Database.ExecuteSqlRawAsync(string.Join(";\n", statements), parameters, timeoutSource.Token).ConfigureAwait(false);
    }

    Type? Resolve(string name)
    {
        var type = Type.GetType(name, throwOnError: false);
        if (type is not null)
            _types.TryAdd(name, type); // a type that does not load is looked up again next time (it may be deployed later)
        return type;
    }

    static readonly KeyValuePair<string, object?> DirectTag = new("integration.outbox.delivery", "direct"), ClaimedTag = new("integration.outbox.delivery", "claimed");

    async Task SendAsync(OutboxMessage message, TimeSpan timeout, CancellationToken cancellationToken, bool direct)
    {
        var type = (_types.TryGetValue(message.MessageType, out var known) ? known : Resolve(message.MessageType))
            ?? throw new OutboxDeliveryException($"Outbox message {message.MessageId}: type '{message.MessageType}' cannot be loaded in this process");
        var body = JsonSerializer.Deserialize(message.Body, type, EntityFrameworkOutbox.Json)
            ?? throw new OutboxDeliveryException($"Outbox message {message.MessageId}: the body is null");
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);

        // Continue the writer's trace (the HTTP request, the consumer): MassTransit's send span becomes its grandchild.
        using var activity = message.TraceParent is { } parent && ActivityContext.TryParse(parent, message.TraceState, out var context)
            ? OutboxDiagnostics.Source.StartActivity("outbox send", ActivityKind.Producer, context)
            : OutboxDiagnostics.Source.StartActivity("outbox send", ActivityKind.Producer);
        activity?.SetTag("messaging.message.id", message.MessageId.ToString());
        activity?.SetTag("integration.outbox.transaction", message.TransactionId);
        if (message.Sequence != 0)   // a directly delivered row the writer appended to its command has none in memory
            activity?.SetTag("integration.outbox.sequence", message.Sequence);

        var envelope = OutboxEnvelope.Deserialize(message.Envelope);

        void Stamp(SendContext send)
        {
            envelope?.ApplyTo(send);
            send.MessageId = message.MessageId;
            if (message.CorrelationId is { } correlation)
                send.CorrelationId = correlation;
        }

        // Bounded also where the token is not observed (a send waiting on a connection being recovered after a broker node
        // died): a send that outlives its timeout counts as failed and is retried with the same MessageId after the lease,
        // so a late confirm can cause a duplicate (which the inbox absorbs), never a stalled relay.
        var sending = message.Destination is null
            ? bus.Publish(body, type, Pipe.Execute<PublishContext>(Stamp), timeoutSource.Token)
            : SendToAsync(message.Destination, body, type, Stamp, timeoutSource.Token);
        await sending.WaitAsync(timeout + TimeSpan.FromSeconds(1), time, cancellationToken).ConfigureAwait(false);

        metrics.Delivered.Add(1, direct ? DirectTag : ClaimedTag);
        metrics.CommitToSend.Record((time.GetUtcNow() - message.CreatedAt).TotalMilliseconds, direct ? DirectTag : ClaimedTag);
    }

    async Task SendToAsync(string destination, object body, Type type, Action<SendContext> stamp, CancellationToken cancellationToken)
    {
        var endpoint = await bus.GetSendEndpoint(new Uri(destination)).ConfigureAwait(false);
        await endpoint.Send(body, type, Pipe.Execute(stamp), cancellationToken).ConfigureAwait(false);
    }

    async Task HousekeepingAsync(OutboxOptions settings, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (now < _nextCleanup)
            return;
        _nextCleanup = now + settings.CleanupInterval;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
        var tables = Tables(db);

        var pending = db.Set<OutboxMessage>().Where(m => m.DeliveredAt == null);
        var count = await pending.LongCountAsync(cancellationToken).ConfigureAwait(false);
        var oldest = count == 0 ? (DateTimeOffset?)null : await pending.MinAsync(m => (DateTimeOffset?)m.CreatedAt, cancellationToken).ConfigureAwait(false);
        statistics.Update(count, oldest is null ? TimeSpan.Zero : now - oldest.Value, now);
        // The statistics above are every host's (health); the deletes below run on the housekeeping leader only, when one is elected.
        if (!scope.ServiceProvider.HousekeepingMayRun("outbox-cleanup"))
            return;

        // Small batches, each its own statement: no long locks on live rows.
        var cutoff = now - settings.RetentionPeriod;
        int deleted;
        do
        {
            var sql = $$"""
                DELETE FROM {{tables.Messages}} WHERE sequence IN (
                    SELECT sequence FROM {{tables.Messages}} WHERE delivered_at IS NOT NULL AND delivered_at < {0} LIMIT {1})
                """;
            deleted = await db.Database.ExecuteSqlRawAsync(sql, [cutoff, settings.CleanupBatchSize], cancellationToken).ConfigureAwait(false);
        }
        while (deleted == settings.CleanupBatchSize && !cancellationToken.IsCancellationRequested);

        var inboxCutoff = now - settings.InboxRetention;
        do
        {
            var sql = $$"""
                DELETE FROM {{tables.Inbox}} WHERE ctid IN (
                    SELECT ctid FROM {{tables.Inbox}} WHERE received_at < {0} LIMIT {1})
                """;
            deleted = await db.Database.ExecuteSqlRawAsync(sql, [inboxCutoff, settings.CleanupBatchSize], cancellationToken).ConfigureAwait(false);
        }
        while (deleted == settings.CleanupBatchSize && !cancellationToken.IsCancellationRequested);
    }

    async Task ListenAsync(CancellationToken cancellationToken)
    {
        string? connectionString;
        await using (var scope = scopes.CreateAsyncScope())
            connectionString = scope.ServiceProvider.GetRequiredService<TDbContext>().Database.GetConnectionString();
        if (connectionString is null)
            return;

        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
                connection.Notification += (_, _) => Wake();
                await using (var listen = new NpgsqlCommand($"LISTEN {OutboxNotifyInterceptor.Channel}", connection))
                    await listen.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                Wake(); // anything committed while not listening
                while (!cancellationToken.IsCancellationRequested)
                    await connection.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception exception)
            {
                LogListenFailed(logger, exception.Message);
                await Task.Delay(TimeSpan.FromSeconds(2), time, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    public override void Dispose()
    {
        _wake.Dispose();
        _directMarkSignal.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: delivery failed ({Failures} in a row); retrying in {Seconds} s")]
    static partial void LogRelayFailed(ILogger logger, Exception exception, int failures, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: statistics and cleanup failed ({Failures} in a row); retrying in {Seconds} s")]
    static partial void LogHousekeepingFailed(ILogger logger, Exception exception, int failures, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: LISTEN connection lost ({Reason}); polling until it is back")]
    static partial void LogListenFailed(ILogger logger, string reason);
}

/// <summary>A transaction's messages could not all be delivered; it is retried.</summary>
sealed class OutboxDeliveryException(string message) : Exception(message);
