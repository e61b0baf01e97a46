using MassTransit;
using MassTransit.Context;
using MassTransit.Middleware;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Integration.Sagas.Postgres;

/// <summary>One message's view of the repository, inside the transaction the factory opened.</summary>
sealed class PostgresSagaRepositoryContext<TSaga, TMessage> :
    ConsumeContextScope<TMessage>,
    SagaRepositoryContext<TSaga, TMessage>
    where TSaga : class, ISaga
    where TMessage : class
{
    readonly PostgresSagaRepositoryContextFactory<TSaga> _factory;
    readonly ConsumeContext<TMessage> _context;
    readonly DbContext _db;

    public PostgresSagaRepositoryContext(PostgresSagaRepositoryContextFactory<TSaga> factory, ConsumeContext<TMessage> context)
        : base(context, factory.Db)
    {
        _factory = factory;
        _context = context;
        _db = factory.Db;
    }

    public Task<SagaConsumeContext<TSaga, TMessage>> Add(TSaga instance) =>
        CreateSagaConsumeContext(_context, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<TSaga, TMessage>> Insert(TSaga instance)
    {
        var entry = _db.Set<TSaga>().Add(instance);
        try
        {
            // The one save that keeps EF Core's savepoint: a duplicate must leave the transaction usable, because MassTransit
            // then loads the existing instance in it.
            await _db.SaveChangesAsync(CancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateException exception) when (exception.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            entry.State = EntityState.Detached;
            return null!; // MassTransit then loads the existing instance
        }

        return await CreateSagaConsumeContext(_context, instance, SagaConsumeContextMode.Insert).ConfigureAwait(false);
    }

    public async Task<SagaConsumeContext<TSaga, TMessage>> Load(Guid correlationId)
    {
        var instance = await _factory.LoadForUpdate(correlationId, CancellationToken).ConfigureAwait(false);
        return instance is null
            ? null!
            : await CreateSagaConsumeContext(_context, instance, SagaConsumeContextMode.Load).ConfigureAwait(false);
    }

    public Task Save(SagaConsumeContext<TSaga> context)
    {
        _db.Set<TSaga>().Add(context.Saga);
        return _factory.SaveWithoutSavepoint(CancellationToken);
    }

    public Task Update(SagaConsumeContext<TSaga> context) =>
        _factory.SaveWithoutSavepoint(CancellationToken);

    public Task Delete(SagaConsumeContext<TSaga> context)
    {
        _db.Set<TSaga>().Remove(context.Saga);
        return _factory.SaveWithoutSavepoint(CancellationToken);
    }

    public Task Discard(SagaConsumeContext<TSaga> context) => Task.CompletedTask;

    public Task Undo(SagaConsumeContext<TSaga> context)
    {
        var entry = _db.ChangeTracker.Entries<TSaga>().FirstOrDefault(e => e.Entity.CorrelationId == context.Saga.CorrelationId);
        if (entry is not null)
            entry.State = EntityState.Unchanged;
        return Task.CompletedTask;
    }

    public Task<SagaConsumeContext<TSaga, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> consumeContext, TSaga instance, SagaConsumeContextMode mode)
        where T : class =>
        Task.FromResult<SagaConsumeContext<TSaga, T>>(new DefaultSagaConsumeContext<TSaga, T>(consumeContext, instance));
}

/// <summary>Reads outside of a message: <c>ILoadSagaRepository.Load</c> and <c>IQuerySagaRepository.Find</c>.</summary>
sealed class PostgresSagaReadContext<TSaga>(DbContext db, CancellationToken cancellationToken) :
    BasePipeContext(cancellationToken),
    LoadSagaRepositoryContext<TSaga>,
    QuerySagaRepositoryContext<TSaga>
    where TSaga : class, ISaga
{
    public async Task<TSaga> Load(Guid correlationId) =>
        (await db.Set<TSaga>().AsNoTracking().SingleOrDefaultAsync(s => s.CorrelationId == correlationId, CancellationToken).ConfigureAwait(false))!;

    public async Task<SagaRepositoryQueryContext<TSaga>> Query(ISagaQuery<TSaga> query, CancellationToken cancellationToken)
    {
        var ids = await db.Set<TSaga>().AsNoTracking().Where(query.FilterExpression).Select(s => s.CorrelationId)
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        return new DefaultSagaRepositoryQueryContext<TSaga>(this, ids);
    }
}
