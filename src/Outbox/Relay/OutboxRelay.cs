using System.Diagnostics;
using System.Text.Json;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
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
public sealed partial class OutboxRelay<TDbContext>(IServiceScopeFactory scopes, IBus bus, IOptions<OutboxOptions> options, OutboxStatistics statistics,
    TimeProvider time, ILogger<OutboxRelay<TDbContext>> logger, OutboxNotifyInterceptor? commits = null) : BackgroundService
    where TDbContext : DbContext
{
    /// <summary>Message types by stored name: resolving an assembly-qualified name is not free, and a relay sees few types.</summary>
    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Type> Types = new(StringComparer.Ordinal);

    readonly SemaphoreSlim _wake = new(0, 1);
    DateTimeOffset _nextCleanup = DateTimeOffset.MinValue;

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

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        OutboxDiagnostics.Statistics = statistics;
        var settings = options.Value;
        if (!settings.RunRelay)
            return;
        await WaitForBusAsync(stoppingToken).ConfigureAwait(false);
        if (commits is not null)
            commits.Committed += Wake; // commits in this process wake it directly; other processes' by NOTIFY
        try
        {
            await RunAsync(settings, stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            if (commits is not null)
                commits.Committed -= Wake;
        }
    }

    async Task RunAsync(OutboxOptions settings, CancellationToken stoppingToken)
    {
        var listener = Task.Run(() => ListenAsync(stoppingToken), stoppingToken);
        var failures = 0;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var delivered = await DeliverBatchAsync(settings, stoppingToken).ConfigureAwait(false);
                failures = 0;
                await HousekeepingAsync(settings, stoppingToken).ConfigureAwait(false);
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

        await listener.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
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
            await using var command = new NpgsqlCommand("""
                WITH claimed AS (
                    UPDATE outbox_transactions SET lock_token = @token, locked_until = now() + @lease, attempts = attempts + 1
                    WHERE id IN (SELECT id FROM outbox_transactions
                                 WHERE delivered_at IS NULL AND (locked_until IS NULL OR locked_until < now())
                                 ORDER BY sequence LIMIT @batch FOR UPDATE SKIP LOCKED)
                    RETURNING id, sequence)
                SELECT c.id, m.sequence, m.message_id, m.destination, m.message_type, m.body, m.correlation_id, m.created_at, m.trace_parent, m.trace_state, m.envelope
                FROM claimed c LEFT JOIN outbox_messages m ON m.transaction_id = c.id AND m.delivered_at IS NULL
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
                    OutboxDiagnostics.Failures.Add(1);
                    lock (failed)
                        failed.Add((transactionId, exception.Message));
                }
            }).ConfigureAwait(false);

        await using (var scope = scopes.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            if (delivered.Count > 0)
            {
                // One round trip: only transactions this relay still holds are marked, with their messages.
                var ids = delivered.ToArray();
                await db.Database.ExecuteSqlInterpolatedAsync($"""
                    WITH done AS (
                        UPDATE outbox_transactions SET delivered_at = now(), lock_token = NULL, locked_until = NULL, last_error = NULL
                        WHERE id = ANY({ids}) AND lock_token = {token} RETURNING id)
                    UPDATE outbox_messages SET delivered_at = now() WHERE transaction_id IN (SELECT id FROM done) AND delivered_at IS NULL
                    """, cancellationToken).ConfigureAwait(false);
            }

            foreach (var (id, error) in failed)
            {
                // Keep the claim a little while (backoff), then any relay may retry it.
                var retryAt = TimeSpan.FromSeconds(2);
                var reason = error.Length > 2000 ? error[..2000] : error;
                await db.Database.ExecuteSqlInterpolatedAsync(
                    $"UPDATE outbox_transactions SET locked_until = now() + {retryAt}, last_error = {reason} WHERE id = {id} AND lock_token = {token}",
                    cancellationToken).ConfigureAwait(false);
            }
        }

        if (failed.Count > 0)
            throw new OutboxDeliveryException($"{failed.Count} of {claimed.Count} outbox transaction(s) could not be delivered: {failed[0].Error}");
        return delivered.Count;
    }

    static Type? Resolve(string name)
    {
        var type = Type.GetType(name, throwOnError: false);
        if (type is not null)
            Types.TryAdd(name, type); // a type that does not load is looked up again next time (it may be deployed later)
        return type;
    }

    async Task SendAsync(OutboxMessage message, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var type = (Types.TryGetValue(message.MessageType, out var known) ? known : Resolve(message.MessageType))
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

        OutboxDiagnostics.Delivered.Add(1);
        OutboxDiagnostics.CommitToSend.Record((time.GetUtcNow() - message.CreatedAt).TotalMilliseconds);
    }

    async Task HousekeepingAsync(OutboxOptions settings, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        if (now < _nextCleanup)
            return;
        _nextCleanup = now + settings.CleanupInterval;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TDbContext>();

        var pending = db.Set<OutboxMessage>().Where(m => m.DeliveredAt == null);
        var count = await pending.LongCountAsync(cancellationToken).ConfigureAwait(false);
        var oldest = count == 0 ? (DateTimeOffset?)null : await pending.MinAsync(m => (DateTimeOffset?)m.CreatedAt, cancellationToken).ConfigureAwait(false);
        statistics.Update(count, oldest is null ? TimeSpan.Zero : now - oldest.Value, now);

        // Small batches, each its own statement: no long locks on live rows (messages go by cascade).
        var cutoff = now - settings.RetentionPeriod;
        int deleted;
        do
        {
            deleted = await db.Database.ExecuteSqlInterpolatedAsync($"""
                DELETE FROM outbox_transactions WHERE id IN (
                    SELECT id FROM outbox_transactions WHERE delivered_at IS NOT NULL AND delivered_at < {cutoff} LIMIT {settings.CleanupBatchSize})
                """, cancellationToken).ConfigureAwait(false);
        }
        while (deleted == settings.CleanupBatchSize && !cancellationToken.IsCancellationRequested);

        var inboxCutoff = now - settings.InboxRetention;
        do
        {
            deleted = await db.Database.ExecuteSqlInterpolatedAsync($"""
                DELETE FROM inbox_states WHERE ctid IN (
                    SELECT ctid FROM inbox_states WHERE received_at < {inboxCutoff} LIMIT {settings.CleanupBatchSize})
                """, cancellationToken).ConfigureAwait(false);
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

    /// <inheritdoc />
    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: delivery failed ({Failures} in a row); retrying in {Seconds} s")]
    static partial void LogRelayFailed(ILogger logger, Exception exception, int failures, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Outbox relay: LISTEN connection lost ({Reason}); polling until it is back")]
    static partial void LogListenFailed(ILogger logger, string reason);
}

/// <summary>A transaction's messages could not all be delivered; it is retried.</summary>
public sealed class OutboxDeliveryException(string message) : Exception(message);
