using System.Data;
using MassTransit;
using MassTransit.Middleware.InMemoryOutbox;
using MassTransit.Saga;
using Integration.Outbox.Transactions;
using Integration.Outbox.Writing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Integration.Sagas.Postgres;

/// <summary>
/// MassTransit's saga repository seam for PostgreSQL through EF Core: each message for a saga instance runs in one
/// database transaction on the scope's DbContext; a concurrency conflict rolls the attempt back, discards the
/// messages it would have sent and processes the message again from a fresh read, up to
/// <see cref="PostgresSagaRepositoryOptions.ConflictRetryLimit"/> times. Messages the saga publishes or sends are
/// released only after its row committed, so a retried attempt never leaks messages.
/// </summary>
sealed partial class PostgresSagaRepositoryContextFactory<TSaga>(DbContext dbContext, PostgresSagaRepositoryOptions options, SagasMetrics metrics,
    SagaLockStatements statements, ILogger? logger = null, DeferredTransactionInterceptor? deferredTransactions = null,
    SagaInstanceCache<TSaga>? cache = null, SagaReadBatcher<TSaga>? reads = null) :
    ISagaRepositoryContextFactory<TSaga>,
    IQuerySagaRepositoryContextFactory<TSaga>,
    ILoadSagaRepositoryContextFactory<TSaga>
    where TSaga : class, ISaga
{
    readonly DbContext _db = dbContext ?? throw new ArgumentNullException(nameof(dbContext));
    readonly PostgresSagaRepositoryOptions _options = options ?? throw new ArgumentNullException(nameof(options));
    readonly ILogger _logger = logger ?? NullLogger.Instance;

    /// <summary>The current attempt's unit of work in optimistic mode (its transaction begins only when needed), else null.</summary>
    DeferredTransaction? _unit;

    /// <summary>The instances the current attempt loaded, and whether one came from <see cref="SagaInstanceCache{TSaga}"/>.</summary>
    readonly List<Guid> _loaded = [];
    bool _fromCache;

    SagaInstanceCache<TSaga>? Cache => _unit is not null && cache is not null && cache.Supports(_db) ? cache : null;

        public void Probe(ProbeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Add("persistence", "postgresql");
        context.Add("concurrencyMode", _options.ConcurrencyMode.ToString());
        context.Add("conflictRetryLimit", _options.ConflictRetryLimit);
    }

        public Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        return WithConflictRetries(context, async consumeContext =>
        {
            var repositoryContext = new PostgresSagaRepositoryContext<TSaga, T>(this, consumeContext);
            await next.Send(repositoryContext).ConfigureAwait(false);
        });
    }

        public Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(next);
        return WithConflictRetries(context, async consumeContext =>
        {
            var repositoryContext = new PostgresSagaRepositoryContext<TSaga, T>(this, consumeContext);
            var ids = await _db.Set<TSaga>().AsNoTracking().Where(query.FilterExpression).Select(s => s.CorrelationId)
                .ToListAsync(context.CancellationToken).ConfigureAwait(false);
            var instances = new List<TSaga>(ids.Count);
            foreach (var id in ids)
            {
                if (await LoadForUpdate(id, context.CancellationToken).ConfigureAwait(false) is { } instance)
                    instances.Add(instance);
            }

            await next.Send(new LoadedSagaRepositoryQueryContext<TSaga, T>(repositoryContext, instances)).ConfigureAwait(false);
        });
    }

        public Task<T> Execute<T>(Func<LoadSagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(asyncMethod);
        return asyncMethod(new PostgresSagaReadContext<TSaga>(_db, cancellationToken));
    }

        public Task<T> Execute<T>(Func<QuerySagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(asyncMethod);
        return asyncMethod(new PostgresSagaReadContext<TSaga>(_db, cancellationToken));
    }

    internal DbContext Db => _db;

    /// <summary>
    /// Reads an instance for this message, tracked. Pessimistic mode locks the row (<c>FOR UPDATE</c>) until the
    /// transaction ends; optimistic mode reads it as is and relies on the <c>xmin</c> check when saving.
    /// </summary>
    internal async Task<TSaga?> LoadForUpdate(Guid correlationId, CancellationToken cancellationToken)
    {
        if (_options.ConcurrencyMode == SagaConcurrencyMode.Optimistic)
        {
            if (Cache is { } instances)
            {
                _loaded.Add(correlationId);
                if (!_db.ChangeTracker.Entries<TSaga>().Any(e => e.Entity.CorrelationId == correlationId)
                    && instances.Restore(_db, correlationId) is { } cached)
                {
                    _fromCache = true;
                    return cached;
                }
            }

            // Coalesced with the other events' reads, then attached with the row version that read saw.
            if (_unit is not null && reads?.Properties(_db) is { } properties
                && !_db.ChangeTracker.Entries<TSaga>().Any(e => e.Entity.CorrelationId == correlationId))
            {
                var values = await reads.LoadAsync(correlationId, cancellationToken).ConfigureAwait(false);
                return values is null ? null : SagaInstanceCache<TSaga>.Attach(_db, correlationId, values, properties);
            }

            // Outside the transaction while none has begun: the UPDATE's xmin check guards the row, not the read.
            using var outside = _unit?.Suppress();
            return await _db.Set<TSaga>().SingleOrDefaultAsync(s => s.CorrelationId == correlationId, cancellationToken).ConfigureAwait(false);
        }

        var sql = statements.For<TSaga>(_db.Model);
        var rows = await _db.Set<TSaga>().FromSqlRaw(sql, correlationId).ToListAsync(cancellationToken).ConfigureAwait(false);
        return rows.Count == 0 ? null : rows[0];
    }

    /// <summary>
    /// Saves inside the repository's transaction without EF Core's automatic <c>SAVEPOINT</c> / <c>RELEASE SAVEPOINT</c>
    /// around the batch (two round trips of their own on every event). The savepoint bought nothing here: any failure of
    /// the save ends the attempt, which rolls the whole transaction back (a conflict then processes the message again
    /// from a fresh read; anything else goes to the endpoint's retry policy), so nothing ever continues in a transaction
    /// after a failed save. <see cref="PostgresSagaRepositoryContext{TSaga,TMessage}.Insert"/> is the exception: it
    /// recovers from a duplicate insert inside the transaction and keeps the savepoint.
    /// </summary>
    internal async Task SaveWithoutSavepoint(CancellationToken cancellationToken)
    {
        if (_unit is not null)
            return;   // optimistic mode: the attempt's one save at its end (DeferredTransaction.CompleteAsync)
        await _db.SaveWithoutSavepointAsync(cancellationToken).ConfigureAwait(false);
    }

    async Task WithConflictRetries<T>(ConsumeContext<T> context, Func<ConsumeContext<T>, Task> attempt)
        where T : class
    {
        if (_options.TransactionalOutbox && _db.Model.FindEntityType(typeof(Integration.Outbox.Model.OutboxMessage)) is null)
        {
            throw new InvalidOperationException($"Saga {typeof(TSaga).Name}: PostgresSagaRepositoryOptions.TransactionalOutbox needs the outbox tables in " +
                $"{_db.GetType().Name}: call modelBuilder.AddIntegrationOutbox() in its OnModelCreating");
        }

        var strategy = _db.Database.CreateExecutionStrategy();
        var staleCacheRetried = false;
        for (var retry = 0; ; retry++)
        {
            // Either the saga's messages become outbox rows in its transaction, or they wait in memory for the commit.
            InMemoryOutboxConsumeContext<T>? memory = null;
            try
            {
                await strategy.ExecuteAsync(async cancellationToken =>
                {
                    // A transient-failure retry by the execution strategy starts over just like a conflict retry.
                    if (memory is not null)
                        await memory.DiscardPendingActions().ConfigureAwait(false);
                    _db.ChangeTracker.Clear();
                    ConsumeContext<T> attemptContext = _options.TransactionalOutbox
                        ? OutboxConsumeContext<T>.Create(context, _db)
                        : memory = new InMemoryOutboxConsumeContext<T>(context);
                    // Optimistic mode: the read runs on its own, the machine's changes (the instance, outbox rows, anything
                    // it added) are written at the end in one batch that commits by itself when nothing else needed the
                    // transaction: SELECT + UPDATE, two round trips. A command of the machine begins the transaction first.
                    if (_options.ConcurrencyMode == SagaConcurrencyMode.Optimistic
                        && deferredTransactions is not null
                        && await deferredTransactions.StartAsync(_db, IsolationLevel.ReadCommitted, $"The saga repository of {typeof(TSaga).Name}",
                            cancellationToken).ConfigureAwait(false) is { } unit)
                    {
                        _unit = unit;
                        _loaded.Clear();
                        _fromCache = false;
                        try
                        {
                            await using (unit.ConfigureAwait(false))
                            {
                                await attempt(attemptContext).ConfigureAwait(false);
                                var deleted = Cache is null ? [] : _db.ChangeTracker.Entries<TSaga>()
                                    .Where(e => e.State == EntityState.Deleted).Select(e => e.Entity.CorrelationId).ToList();
                                await unit.CompleteAsync(cancellationToken).ConfigureAwait(false);
                                if (Cache is { } instances)
                                {
                                    // Committed: what the rows hold now (the row version EF Core read back included).
                                    foreach (var entry in _db.ChangeTracker.Entries<TSaga>())
                                        instances.Store(entry);
                                    foreach (var id in deleted)
                                        instances.Evict(id);
                                }
                            }
                        }
                        catch
                        {
                            if (Cache is { } instances)
                            {
                                foreach (var id in _loaded)
                                    instances.Evict(id);
                            }

                            throw;
                        }
                        finally
                        {
                            _unit = null;
                        }

                        return;
                    }

                    await using var transaction = await _db.Database.BeginTransactionAsync(IsolationLevel.ReadCommitted, cancellationToken).ConfigureAwait(false);
                    await attempt(attemptContext).ConfigureAwait(false);
                    if (_db.ChangeTracker.HasChanges())
                        await SaveWithoutSavepoint(cancellationToken).ConfigureAwait(false);   // rows the machine wrote after the saga was saved
                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                }, context.CancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (SagaConflicts.IsConflict(exception))
            {
                if (memory is not null)
                    await memory.DiscardPendingActions().ConfigureAwait(false);
                _db.ChangeTracker.Clear();
                if (_fromCache && !staleCacheRetried)
                {
                    // The cached row version was stale (another process wrote the row): the entry is gone; read it fresh,
                    // without counting this against the conflict limit.
                    staleCacheRetried = true;
                    metrics.Conflicts.Add(1);
                    LogConflict(_logger, typeof(TSaga).Name, context.CorrelationId, retry + 1, "stale cached instance: " + exception.GetBaseException().Message);
                    retry--;
                    continue;
                }
                if (retry >= _options.ConflictRetryLimit)
                {
                    metrics.ConflictsExhausted.Add(1);
                    throw new SagaConcurrencyException(
                        $"Saga {typeof(TSaga).Name} {context.CorrelationId}: message {TypeName<T>()} still conflicted after {retry} retries " +
                        $"(PostgresSagaRepositoryOptions.ConflictRetryLimit = {_options.ConflictRetryLimit}): {exception.GetBaseException().Message}", exception);
                }

                metrics.Conflicts.Add(1);
                LogConflict(_logger, typeof(TSaga).Name, context.CorrelationId, retry + 1, exception.GetBaseException().Message);
                await Task.Delay(Backoff(retry), context.CancellationToken).ConfigureAwait(false);
                continue;
            }
            catch
            {
                if (memory is not null)
                    await memory.DiscardPendingActions().ConfigureAwait(false);
                _db.ChangeTracker.Clear();
                throw;
            }

            // Committed: only now do the saga's published, sent and scheduled messages leave (in memory mode; with the
            // transactional outbox they committed as rows and the relay delivers them).
            if (memory is not null)
                await memory.ExecutePendingActions(false).ConfigureAwait(false);
            return;
        }
    }

    TimeSpan Backoff(int retry)
    {
        var max = _options.ConflictRetryMaxDelay.TotalMilliseconds;
        if (max <= 0)
            return TimeSpan.Zero;
        var ceiling = Math.Min(max, 5 * Math.Pow(2, Math.Min(retry, 10)));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
    }

    static string TypeName<T>() => typeof(T).Name;

    [LoggerMessage(Level = LogLevel.Debug, Message = "Saga {Saga} {CorrelationId}: concurrency conflict, processing the message again (retry {Retry}): {Reason}")]
    static partial void LogConflict(ILogger logger, string saga, Guid? correlationId, int retry, string reason);
}
