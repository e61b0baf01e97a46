using System.Data.Common;
using System.Diagnostics.Metrics;
using Integration.Outbox.Inbox;
using Integration.Outbox.Model;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Integration.Outbox.Relay;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Integration.Outbox.Batching;

/// <summary>
/// Collects the messages of one endpoint into batches (up to <see cref="BatchingOptions.MessageLimit"/> within
/// <see cref="BatchingOptions.TimeLimit"/> of the first) and applies each in one database transaction: inbox records for
/// every message (duplicates are left out), the handler's writes and outbox messages, one commit. Each message's
/// consume call waits for the outcome of its own message, so MassTransit acknowledges it only after the commit that
/// contains it. When a batch fails it is rolled back and bisected: the halves are applied on their own, down to single
/// messages; the message that fails alone fails its own consume call (and goes to <c>&lt;queue&gt;_error</c> with the
/// reason) while every other message commits.
/// </summary>
/// <remarks>
/// MassTransit's <c>Batch&lt;T&gt;</c> consumer collects the same way but completes or faults every message of a batch
/// together; isolating one poison message needs an outcome per message, hence this collector.
/// </remarks>
sealed partial class BatchCollector<TMessage>
    where TMessage : class
{
    readonly Lock _lock = new();
    readonly string _queue;
    readonly BatchingOptions _options;
    readonly IServiceScopeFactory _scopes;
    readonly TimeProvider _time;
    readonly BatchMetrics _metrics;
    readonly ILogger _logger;
    readonly SemaphoreSlim _gate;   // not disposed: a batch still committing at shutdown releases it (no wait handle is ever created)
    List<Entry> _pending = [];
    long _generation;

    public BatchCollector(string queue, BatchingOptions options, IServiceScopeFactory scopes, TimeProvider time, BatchMetrics metrics, ILogger logger)
    {
        _queue = queue;
        _options = options;
        _scopes = scopes;
        _time = time;
        _metrics = metrics;
        _logger = logger;
        _gate = new SemaphoreSlim(options.ConcurrencyLimit, options.ConcurrencyLimit);
    }

    public string Queue => _queue;

    /// <summary>One message waiting for its batch's outcome.</summary>
    sealed class Entry(ConsumeContext<TMessage> context)
    {
        public ConsumeContext<TMessage> Context { get; } = context;

        public TaskCompletionSource Outcome { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Adds the message to the open batch; completes when the transaction that applied it committed, or faults with its own failure.</summary>
    public Task Add(ConsumeContext<TMessage> context)
    {
        var entry = new Entry(context);
        if (context.GetRetryAttempt() > 0)
        {
            // A retry of a message that failed (alone, after the bisection): applied again at once, alone, not after a time limit.
            _ = Run([entry]);
            return entry.Outcome.Task;
        }

        List<Entry>? full = null;
        long? opened = null;
        lock (_lock)
        {
            _pending.Add(entry);
            if (_pending.Count >= _options.MessageLimit)
                full = Take();
            else if (_pending.Count == 1)
                opened = _generation;
        }

        if (full is not null)
            _ = Run(full);
        else if (opened is { } generation)
            _ = CloseAfterTimeLimit(generation);
        return entry.Outcome.Task;
    }

    List<Entry> Take()
    {
        var batch = _pending;
        _pending = [];
        _generation++;
        return batch;
    }

    async Task CloseAfterTimeLimit(long generation)
    {
        await Task.Delay(_options.TimeLimit, _time).ConfigureAwait(false);
        List<Entry>? batch = null;
        lock (_lock)
        {
            if (_generation == generation && _pending.Count > 0)
                batch = Take();
        }

        if (batch is not null)
            await Run(batch).ConfigureAwait(false);
    }

    async Task Run(List<Entry> batch)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _metrics.Size.Record(batch.Count, new KeyValuePair<string, object?>("queue", _queue));
            await Apply(batch).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            // Apply completes every entry; this is a last resort so that no consume call waits for ever.
            foreach (var entry in batch)
                entry.Outcome.TrySetException(exception);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Applies <paramref name="entries"/> in one transaction; on failure, each half on its own, down to the failing message.</summary>
    async Task Apply(List<Entry> entries)
    {
        try
        {
            var duplicates = await Commit(entries).ConfigureAwait(false);
            _metrics.Applied.Add(entries.Count - duplicates, new KeyValuePair<string, object?>("queue", _queue));
            foreach (var entry in entries)
                entry.Outcome.TrySetResult();
        }
        catch (Exception exception) when (entries.Count > 1)
        {
            _metrics.Splits.Add(1, new KeyValuePair<string, object?>("queue", _queue));
            LogSplit(_logger, entries.Count, _queue, exception.Message);
            var half = entries.Count / 2;
            await Apply(entries.GetRange(0, half)).ConfigureAwait(false);
            await Apply(entries.GetRange(half, entries.Count - half)).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            var entry = entries[0];
            _metrics.Failed.Add(1, new KeyValuePair<string, object?>("queue", _queue));
            LogFailed(_logger, entry.Context.MessageId, _queue, exception.Message);
            entry.Outcome.TrySetException(exception);
        }
    }

    /// <summary>One transaction: the inbox records, the handler's writes and outbox rows. Returns how many entries were duplicates.</summary>
    async Task<int> Commit(List<Entry> entries)
    {
        await using var scope = _scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<OutboxDbContext>().Context;
        var handler = scope.ServiceProvider.GetRequiredService<IBatchHandler<TMessage>>();
        var database = db.Database;
        var inbox = OutboxTables.Of(db).Inbox;
        var ids = entries.Select(e => e.Context.MessageId).OfType<Guid>().Distinct().Order().ToArray();
        var duplicates = 0;

        await database.CreateExecutionStrategy().ExecuteAsync(async () =>
        {
            db.ChangeTracker.Clear();
            // The batch is one transaction of its own: no savepoint around SaveChanges (it would only cost a round trip).
            database.AutoSavepointsEnabled = false;
            await using var transaction = await database.BeginTransactionAsync().ConfigureAwait(false);
            var fresh = ids.Length == 0 ? [] : await Record(database, transaction, inbox, ids).ConfigureAwait(false);
            var apply = new List<TMessage>(entries.Count);
            foreach (var entry in entries)
            {
                // A message without an id (allowed only when RequireMessageId is false) has no record to check.
                if (entry.Context.MessageId is not { } id || fresh.Remove(id))
                    apply.Add(entry.Context.Message);
            }

            duplicates = entries.Count - apply.Count;
            if (apply.Count > 0)
                await handler.HandleAsync(apply, CancellationToken.None).ConfigureAwait(false);
            await db.SaveChangesAsync().ConfigureAwait(false);
            await transaction.CommitAsync().ConfigureAwait(false);
        }).ConfigureAwait(false);

        if (duplicates > 0)
        {
            _metrics.Duplicates.Add(duplicates, new KeyValuePair<string, object?>("consumer", _queue));
            LogDuplicates(_logger, duplicates, _queue);
        }

        return duplicates;
    }

    /// <summary>Inserts the inbox records (sorted: concurrent batches lock them in one order); returns the ids not seen before.</summary>
    async Task<HashSet<Guid>> Record(DatabaseFacade database, IDbContextTransaction transaction, string inbox, Guid[] ids)
    {
        var connection = database.GetDbConnection();
        await using var command = connection.CreateCommand();
        command.Transaction = transaction.GetDbTransaction();
        command.CommandText = $"INSERT INTO {inbox} (message_id, consumer, received_at) SELECT id, @consumer, now() FROM unnest(@ids) AS id ORDER BY id ON CONFLICT DO NOTHING RETURNING message_id";
        Add(command, "ids", ids);
        Add(command, "consumer", _queue);
        var fresh = new HashSet<Guid>();
        await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
        while (await reader.ReadAsync().ConfigureAwait(false))
            fresh.Add(reader.GetGuid(0));
        return fresh;
    }

    static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Batch of {Count} on {Queue} failed ({Reason}); applying each half on its own to isolate the failing message")]
    static partial void LogSplit(ILogger logger, int count, string queue, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Message {MessageId} on {Queue} failed on its own ({Reason}); the rest of its batch committed")]
    static partial void LogFailed(ILogger logger, Guid? messageId, string queue, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch on {Queue}: {Count} message(s) were already consumed; acknowledged without applying them again")]
    static partial void LogDuplicates(ILogger logger, int count, string queue);
}

/// <summary>The batch step's instruments (meter <c>Integration.Outbox.Batching</c>).</summary>
sealed class BatchMetrics
{
    public BatchMetrics(IMeterFactory meters, OutboxMetrics outbox)
    {
        var meter = meters.Create(BatchRegistrationExtensions.MeterName);
        Size = meter.CreateHistogram<int>("integration.batch.size", "{message}", "Messages per batch when it closed");
        Applied = meter.CreateCounter<long>("integration.batch.applied", "{message}", "Messages applied and committed by a batch");
        Splits = meter.CreateCounter<long>("integration.batch.splits", "{batch}", "Failed batches split to isolate the failing message");
        Failed = meter.CreateCounter<long>("integration.batch.failed", "{message}", "Messages that failed on their own (sent on to the error pipeline)");
        Duplicates = outbox.Duplicates;
    }

    public Histogram<int> Size { get; }

    public Counter<long> Applied { get; }

    public Counter<long> Splits { get; }

    public Counter<long> Failed { get; }

    public Counter<long> Duplicates { get; }
}
