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
/// Delivers committed outbox messages. Claims whole transactions with <c>FOR UPDATE SKIP LOCKED</c> under a lease (so
/// several relays on one database never deliver the same transaction at once, and a dead relay's claims return),
/// sends each transaction's messages in the order they were written, waits for the broker's confirm, and only then
/// marks them delivered. Wakes on <c>LISTEN integration_outbox</c>; polls as the fallback; backs off while the broker
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
    DateTimeOffset _nextCleanup = DateTimeOffset.MinValue;
    OutboxTables? _tables;

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
        await WaitForBusAsync(stoppingToken).ConfigureAwait(false);
        commits.Committed += Wake; // commits in this process wake it directly; other processes' by NOTIFY
        try
        {
            await RunAsync(settings, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            commits.Committed -= Wake;
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
                var delivered = await DeliverBatchAsync(settings, stoppingToken).ConfigureAwait(false);
                failures = 0;
                if (delivered == 0)
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

    async Task<int> DeliverBatchAsync(OutboxOptions settings, CancellationToken cancellationToken)
    {
        var token = Guid.NewGuid();
        var claimed = new List<Guid>();
        var messages = new List<OutboxMessage>();
        await using (var scope = scopes.CreateAsyncScope())
        {
            // One round trip: claim whole transactions (SKIP LOCKED, under a lease) and read their undelivered messages.
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            await db.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            var tables = Tables(db);
            await using var command = new NpgsqlCommand($"""
                WITH claimed AS (
                    UPDATE {tables.Transactions} SET lock_token = @token, locked_until = now() + @lease, attempts = attempts + 1
                    WHERE id IN (SELECT id FROM {tables.Transactions}
                                 WHERE delivered_at IS NULL AND (locked_until IS NULL OR locked_until < now())
                                 ORDER BY sequence LIMIT @batch FOR UPDATE SKIP LOCKED)
                    RETURNING id, sequence)
                SELECT c.id, m.sequence, m.message_id, m.destination, m.message_type, m.body, m.correlation_id, m.created_at, m.trace_parent, m.trace_state, m.envelope
                FROM claimed c LEFT JOIN {tables.Messages} m ON m.transaction_id = c.id AND m.delivered_at IS NULL
                ORDER BY c.sequence, m.sequence
                """, connection);
            command.Parameters.AddWithValue("token", token);
            command.Parameters.AddWithValue("lease", settings.LockDuration);
            command.Parameters.AddWithValue("batch", settings.BatchSize);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var transactionId = reader.GetGuid(0);
                if (claimed.Count == 0 || claimed[^1] != transactionId)
                    claimed.Add(transactionId);
                if (reader.IsDBNull(1))
                    continue;
                messages.Add(new OutboxMessage
                {
                    TransactionId = transactionId,
                    Sequence = reader.GetInt64(1),
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

        if (claimed.Count == 0)
            return 0;

        var byTransaction = messages.ToLookup(m => m.TransactionId);
        var delivered = new List<Guid>();
        var failed = new List<(Guid Id, string Error)>();
        await Parallel.ForEachAsync(claimed, new ParallelOptions { MaxDegreeOfParallelism = settings.DeliveryConcurrency, CancellationToken = cancellationToken },
            async (transactionId, ct) =>
            {
                try
                {
                    foreach (var message in byTransaction[transactionId])
                        await SendAsync(message, settings.SendTimeout, ct).ConfigureAwait(false);
                    lock (delivered)
                        delivered.Add(transactionId);
                }
                catch (Exception exception) when (exception is not OperationCanceledException || !ct.IsCancellationRequested)
                {
                    metrics.Failures.Add(1);
                    lock (failed)
                        failed.Add((transactionId, exception.Message));
                }
            }).ConfigureAwait(false);

        // Pipelined: the next claim does not wait for this mark (these transactions stay claimed under the lease until it
        // lands, so no relay claims them again); one mark in flight at a time, and its failure fails the next round.
        await MarkedAsync().ConfigureAwait(false);
        _marking = MarkAsync(token, delivered, failed, settings.SendTimeout);
        if (failed.Count > 0)
        {
            await MarkedAsync().ConfigureAwait(false);
            throw new OutboxDeliveryException($"{failed.Count} of {claimed.Count} outbox transaction(s) could not be delivered: {failed[0].Error}");
        }

        return delivered.Count;
    }

    /// <summary>Waits for the mark in flight; a failed mark fails this round once (its transactions return after the lease).</summary>
    Task MarkedAsync()
    {
        var marking = _marking;
        _marking = Task.CompletedTask;
        return marking;
    }

    /// <summary>Records the confirmed transactions as delivered (and the failed ones with their error), for this claim only.</summary>
    async Task MarkAsync(Guid token, List<Guid> delivered, List<(Guid Id, string Error)> failed, TimeSpan timeout)
    {
        // Not cancelled by the host's stop (a confirmed batch left unmarked would be sent again after the lease), but
        // bounded: with the database gone it gives up, and the lease brings the batch back.
        using var timeoutSource = new CancellationTokenSource(timeout);
        var cancellationToken = timeoutSource.Token;
        await using (var scope = scopes.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            var tables = Tables(db);
            if (delivered.Count > 0)
            {
                // One round trip: only transactions this relay still holds are marked, with their messages.
                var ids = delivered.ToArray();
                var sql = $$"""
                    WITH done AS (
                        UPDATE {{tables.Transactions}} SET delivered_at = now(), lock_token = NULL, locked_until = NULL, last_error = NULL
                        WHERE id = ANY({0}) AND lock_token = {1} RETURNING id)
                    UPDATE {{tables.Messages}} SET delivered_at = now() WHERE transaction_id IN (SELECT id FROM done) AND delivered_at IS NULL
                    """;
                await db.Database.ExecuteSqlRawAsync(sql, [ids, token], cancellationToken).ConfigureAwait(false);
            }

            foreach (var (id, error) in failed)
            {
                // Keep the claim a little while (backoff), then any relay may retry it.
                var retryAt = TimeSpan.FromSeconds(2);
                var reason = error.Length > 2000 ? error[..2000] : error;
                var sql = $"UPDATE {tables.Transactions} SET locked_until = now() + {{0}}, last_error = {{1}} WHERE id = {{2}} AND lock_token = {{3}}";
                await db.Database.ExecuteSqlRawAsync(sql, [retryAt, reason, id, token], cancellationToken).ConfigureAwait(false);
            }
        }
    }

    Type? Resolve(string name)
    {
        var type = Type.GetType(name, throwOnError: false);
        if (type is not null)
            _types.TryAdd(name, type); // a type that does not load is looked up again next time (it may be deployed later)
        return type;
    }

    async Task SendAsync(OutboxMessage message, TimeSpan timeout, CancellationToken cancellationToken)
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

        var envelope = OutboxEnvelope.Deserialize(message.Envelope);

        void Stamp(SendContext send)
        {
            envelope?.ApplyTo(send);
            send.MessageId = message.MessageId;
            if (message.CorrelationId is { } correlation)
                send.CorrelationId = correlation;
        }

        if (message.Destination is null)
            await bus.Publish(body, type, Pipe.Execute<PublishContext>(Stamp), timeoutSource.Token).ConfigureAwait(false);
        else
            await (await bus.GetSendEndpoint(new Uri(message.Destination)).ConfigureAwait(false))
                .Send(body, type, Pipe.Execute<SendContext>(Stamp), timeoutSource.Token).ConfigureAwait(false);

        metrics.Delivered.Add(1);
        metrics.CommitToSend.Record((time.GetUtcNow() - message.CreatedAt).TotalMilliseconds);
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

        // Small batches, each its own statement: no long locks on live rows (messages go by cascade).
        var cutoff = now - settings.RetentionPeriod;
        int deleted;
        do
        {
            var sql = $$"""
                DELETE FROM {{tables.Transactions}} WHERE id IN (
                    SELECT id FROM {{tables.Transactions}} WHERE delivered_at IS NOT NULL AND delivered_at < {0} LIMIT {1})
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
