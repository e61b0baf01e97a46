using System.Data;
using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Integration.Outbox.Transactions;

/// <summary>
/// The unit of work of one message on a DbContext (the inbox's, the optimistic saga's) with its database transaction
/// begun only when something needs it, so that the common case commits in one round trip:
/// <list type="bullet">
/// <item>Nothing is sent when the work starts. The first command the work sends through the DbContext (a query, raw
/// SQL, a <c>SaveChanges</c> of its own) begins the transaction first (<see cref="DeferredTransactionInterceptor"/>), so
/// everything the work does still commits or rolls back together, exactly as if the transaction had begun up front.</item>
/// <item>When the work sent no command at all, <see cref="CompleteAsync"/> writes what it tracked in a single batched
/// command without an explicit transaction: PostgreSQL runs the statements of one batch (up to its Sync) in an
/// implicit transaction, so the batch commits atomically, in one round trip instead of the batch plus a <c>COMMIT</c>.
/// It does so only when EF Core certainly sends one command (at most <see cref="MaxEntriesInOneCommand"/> rows, within
/// the provider's <c>MaxBatchSize</c>); otherwise it saves and commits in an explicit transaction.</item>
/// <item>Reads the owner knows to be safe outside the transaction (the optimistic saga's <c>SELECT</c>, guarded by the
/// <c>xmin</c> check of its <c>UPDATE</c>) run under <see cref="Suppress"/>.</item>
/// </list>
/// A transaction the work begins itself (<c>Database.BeginTransaction</c>) is refused with a message: the message's
/// transaction belongs to the inbox or the saga repository.
/// </summary>
sealed class DeferredTransaction : IAsyncDisposable
{
    /// <summary>The most rows written by one command without an explicit transaction (EF Core's Npgsql provider batches up to 1,000).</summary>
    internal const int MaxEntriesInOneCommand = 64;

    readonly DeferredTransactionInterceptor _owner;
    readonly IsolationLevel _isolation;
    readonly string _ownerName;
    int _suppressed;
    int _commandsInImplicitSave;
    bool _beginning;

    internal DeferredTransaction(DeferredTransactionInterceptor owner, DbContext db, IsolationLevel isolation, string ownerName)
    {
        _owner = owner;
        Db = db;
        _isolation = isolation;
        _ownerName = ownerName;
    }

    internal DbContext Db { get; }

    /// <summary>The transaction this unit began for a command of the work (null while none was needed).</summary>
    internal IDbContextTransaction? Transaction { get; private set; }

    /// <summary>True while <see cref="CompleteAsync"/> writes the batch in PostgreSQL's implicit transaction.</summary>
    internal bool ImplicitSave { get; private set; }

    bool Completing { get; set; }

    /// <summary>Runs the owner's own safe reads outside the transaction (while none has begun).</summary>
    internal IDisposable Suppress()
    {
        _suppressed++;
        return new Suppression(this);
    }

    /// <summary>Saves what is tracked and commits: one round trip when no command of the work needed the transaction.</summary>
    internal async Task CompleteAsync(CancellationToken cancellationToken)
    {
        Completing = true;
        var database = Db.Database;
        if (Transaction is null && database.CurrentTransaction is null && Db.ChangeTracker.HasChanges() && FitsOneCommand())
        {
            var behavior = database.AutoTransactionBehavior;
            database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
            ImplicitSave = true;
            try
            {
                await Db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ImplicitSave = false;
                database.AutoTransactionBehavior = behavior;
            }

            return;
        }

        if (Transaction is null && Db.ChangeTracker.HasChanges())
            await BeginAsync(cancellationToken).ConfigureAwait(false);
        if (Db.ChangeTracker.HasChanges())
            await SaveWithoutSavepointAsync(cancellationToken).ConfigureAwait(false);
        if (Transaction is not null)
            await Transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Saves inside the transaction without EF Core's automatic savepoint (<see cref="Savepoints.SaveWithoutSavepointAsync"/>).</summary>
    internal Task SaveWithoutSavepointAsync(CancellationToken cancellationToken) => Db.SaveWithoutSavepointAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        _owner.Release(this);
        try
        {
            if (Transaction is not null)
                await Transaction.DisposeAsync().ConfigureAwait(false);   // rolls back unless committed
        }
        finally
        {
            Transaction = null;
            await Db.Database.CloseConnectionAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Called before every command of the DbContext: begins the transaction when the work needs one.</summary>
    internal void BeforeCommand(DbCommand command)
    {
        if (ImplicitSave)
        {
            // The guard in FitsOneCommand makes EF Core send one command; a second one would commit apart from the first.
            if (++_commandsInImplicitSave > 1)
                throw new InvalidOperationException($"{_ownerName}: EF Core split a save into several commands although it fit in one; " +
                    "the first committed apart from the rest. Report this with the entity types saved.");
            return;
        }

        if (Completing || _suppressed > 0 || Db.Database.CurrentTransaction is not null)
            return;
        Begin();
        command.Transaction = Transaction!.GetDbTransaction();
    }

    internal async ValueTask BeforeCommandAsync(DbCommand command, CancellationToken cancellationToken)
    {
        if (ImplicitSave || Completing || _suppressed > 0 || Db.Database.CurrentTransaction is not null)
        {
            BeforeCommand(command);
            return;
        }

        await BeginAsync(cancellationToken).ConfigureAwait(false);
        command.Transaction = Transaction!.GetDbTransaction();
    }

    /// <summary>Called before a <c>SaveChanges</c> of the work: it joins the unit's transaction instead of committing alone.</summary>
    internal void BeforeSave()
    {
        if (!Completing && !ImplicitSave && Transaction is null && Db.Database.CurrentTransaction is null)
            Begin();
    }

    internal async ValueTask BeforeSaveAsync(CancellationToken cancellationToken)
    {
        if (!Completing && !ImplicitSave && Transaction is null && Db.Database.CurrentTransaction is null)
            await BeginAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Called when a transaction is about to begin on the DbContext: only the unit itself may begin it.</summary>
    internal void BeforeTransaction()
    {
        if (!_beginning)
        {
            throw new InvalidOperationException($"{_ownerName} runs each message in a database transaction of its own on {Db.GetType().Name}: " +
                "the consumer must not begin one (Database.BeginTransaction); its writes are committed with the message's.");
        }
    }

    bool FitsOneCommand() => FitsOneCommand(Db, out _);

    /// <summary>
    /// True when EF Core certainly writes <paramref name="db"/>'s tracked changes in one command <b>and</b> that command may
    /// commit in PostgreSQL's implicit transaction; one pass over the entries, which also tells whether outbox rows are among
    /// them. An <c>UPDATE</c> or <c>DELETE</c> that matches no row (a lost concurrency check, a row deleted meanwhile) is no
    /// database error: EF Core sees it only after the command ran, when the implicit transaction has already committed
    /// everything else in it (outbox rows, the inbox row). So such a statement rides alone, or the save takes a transaction
    /// that is rolled back; only <c>INSERT</c>s, which either take effect or fail the whole command, share it.
    /// </summary>
    internal static bool FitsOneCommand(DbContext db, out bool writesOutbox)
    {
        writesOutbox = false;
        var entries = 0;
        var commands = 0;
        var checkedAfterwards = false;
        foreach (var entry in db.ChangeTracker.Entries())
        {
            if (entry.State is not (EntityState.Added or EntityState.Modified or EntityState.Deleted))
                continue;
            entries++;
            commands += Math.Max(1, entry.Metadata.GetTableMappings().Count());
            checkedAfterwards |= entry.State != EntityState.Added;
            writesOutbox |= entry.State == EntityState.Added && entry.Entity is Model.OutboxMessage;
        }

        // Rows the outbox appends to the save's command (taken out of the tracker for it) are outbox writes too.
        writesOutbox = writesOutbox || Writing.OutboxRowAppender.On(db)?.IsAppending(db) == true;
        if (checkedAfterwards && commands > 1)
            return false;
        var maxBatchSize = db.GetService<IDbContextOptions>().Extensions.OfType<RelationalOptionsExtension>().FirstOrDefault()?.MaxBatchSize ?? 1000;
        return entries <= MaxEntriesInOneCommand && commands <= Math.Min(maxBatchSize, MaxEntriesInOneCommand);
    }

    void Begin()
    {
        _beginning = true;
        try
        {
            Transaction = Db.Database.BeginTransaction(_isolation);
        }
        finally
        {
            _beginning = false;
        }
    }

    async Task BeginAsync(CancellationToken cancellationToken)
    {
        _beginning = true;
        try
        {
            Transaction = await Db.Database.BeginTransactionAsync(_isolation, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _beginning = false;
        }
    }

    sealed class Suppression(DeferredTransaction owner) : IDisposable
    {
        bool _disposed;

        public void Dispose()
        {
            if (_disposed)
                return;
            _disposed = true;
            owner._suppressed--;
        }
    }
}

/// <summary>
/// Begins a <see cref="DeferredTransaction"/>'s database transaction before the first command or save of its work, and
/// refuses transactions the work begins itself. One instance per service provider, on the DbContext's options.
/// </summary>
sealed class DeferredTransactionInterceptor : DbCommandInterceptor, ISaveChangesInterceptor, IDbTransactionInterceptor
{
    readonly ContextTable<DeferredTransaction> _units = new();

    /// <summary>Saves of outbox rows outside any transaction that this interceptor lets commit in their one command.</summary>
    readonly ContextTable<ImplicitSave> _implicitSaves = new();

    /// <summary>
    /// Starts a unit of work on <paramref name="db"/>, or returns null when this interceptor is not on its options (then the
    /// caller begins its transaction up front, as before) or a transaction is already open.
    /// </summary>
    internal async ValueTask<DeferredTransaction?> StartAsync(DbContext db, IsolationLevel isolation, string ownerName, CancellationToken cancellationToken)
    {
        if (db.Database.CurrentTransaction is not null || !IsOn(db))
            return null;
        // One connection for the whole unit (EF Core would otherwise return it to the pool after every command).
        await db.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var unit = new DeferredTransaction(this, db, isolation, ownerName);
        _units.AddOrUpdate(db, unit);
        return unit;
    }

    internal void Release(DeferredTransaction unit)
    {
        if (_units.TryGetValue(unit.Db, out var current) && ReferenceEquals(current, unit))
            _units.Remove(unit.Db);
    }

    bool IsOn(DbContext db) =>
        db.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.Interceptors?.Contains(this) == true;

    DeferredTransaction? UnitOf(DbContext? db) => db is not null && _units.TryGetValue(db, out var unit) ? unit : null;

    /// <summary>Every command of a DbContext passes here (reader, non-query and scalar alike).</summary>
    void BeforeCommand(DbCommand command, CommandEventData eventData)
    {
        if (UnitOf(eventData.Context) is { } unit)
            unit.BeforeCommand(command);
        else
            BeforeCommandOutsideUnit(eventData.Context);
    }

    ValueTask BeforeCommandAsync(DbCommand command, CommandEventData eventData, CancellationToken cancellationToken)
    {
        if (UnitOf(eventData.Context) is { } unit)
            return unit.BeforeCommandAsync(command, cancellationToken);
        BeforeCommandOutsideUnit(eventData.Context);
        return ValueTask.CompletedTask;
    }

    public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
    {
        BeforeCommand(command, eventData);
        return result;
    }

    public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
    {
        await BeforeCommandAsync(command, eventData, cancellationToken).ConfigureAwait(false);
        return result;
    }

    public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
    {
        BeforeCommand(command, eventData);
        return result;
    }

    public override async ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<int> result, CancellationToken cancellationToken = default)
    {
        await BeforeCommandAsync(command, eventData, cancellationToken).ConfigureAwait(false);
        return result;
    }

    public override InterceptionResult<object> ScalarExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<object> result)
    {
        BeforeCommand(command, eventData);
        return result;
    }

    public override async ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData,
        InterceptionResult<object> result, CancellationToken cancellationToken = default)
    {
        await BeforeCommandAsync(command, eventData, cancellationToken).ConfigureAwait(false);
        return result;
    }

    InterceptionResult<int> ISaveChangesInterceptor.SavingChanges(DbContextEventData eventData, InterceptionResult<int> result)
    {
        if (UnitOf(eventData.Context) is { } unit)
            unit.BeforeSave();
        else
            BeforeSaveOutsideUnit(eventData.Context);
        return result;
    }

    async ValueTask<InterceptionResult<int>> ISaveChangesInterceptor.SavingChangesAsync(DbContextEventData eventData, InterceptionResult<int> result,
        CancellationToken cancellationToken)
    {
        if (UnitOf(eventData.Context) is { } unit)
            await unit.BeforeSaveAsync(cancellationToken).ConfigureAwait(false);
        else
            BeforeSaveOutsideUnit(eventData.Context);
        return result;
    }

    int ISaveChangesInterceptor.SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        AfterSave(eventData.Context);
        return result;
    }

    ValueTask<int> ISaveChangesInterceptor.SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken)
    {
        AfterSave(eventData.Context);
        return ValueTask.FromResult(result);
    }

    void ISaveChangesInterceptor.SaveChangesFailed(DbContextErrorEventData eventData) => AfterSave(eventData.Context);

    Task ISaveChangesInterceptor.SaveChangesFailedAsync(DbContextErrorEventData eventData, CancellationToken cancellationToken)
    {
        AfterSave(eventData.Context);
        return Task.CompletedTask;
    }

    void ISaveChangesInterceptor.SaveChangesCanceled(DbContextEventData eventData) => AfterSave(eventData.Context);

    Task ISaveChangesInterceptor.SaveChangesCanceledAsync(DbContextEventData eventData, CancellationToken cancellationToken)
    {
        AfterSave(eventData.Context);
        return Task.CompletedTask;
    }

    /// <summary>
    /// A writer's <c>SaveChanges</c> of business rows with outbox rows, outside any transaction: EF Core would wrap the batch in
    /// a transaction of its own (<c>BEGIN</c> + batch, then <c>COMMIT</c>: two round trips). When the batch is certainly one
    /// command, PostgreSQL's implicit transaction of that command commits it just as atomically in one round trip.
    /// </summary>
    void BeforeSaveOutsideUnit(DbContext? db)
    {
        if (db is null)
            return;
        // A previous save that ended without its completion event (an interceptor after this one threw) must not leave
        // the context without EF Core's own transaction: every save decides again.
        AfterSave(db);
        if (db.Database.CurrentTransaction is not null || db.Database.AutoTransactionBehavior != AutoTransactionBehavior.WhenNeeded
            || !DeferredTransaction.FitsOneCommand(db, out var writesOutbox) || !writesOutbox)
            return;
        db.Database.AutoTransactionBehavior = AutoTransactionBehavior.Never;
        _implicitSaves.AddOrUpdate(db, new ImplicitSave());
    }

    void AfterSave(DbContext? db)
    {
        if (db is not null && _implicitSaves.TryGetValue(db, out _))
        {
            _implicitSaves.Remove(db);
            db.Database.AutoTransactionBehavior = AutoTransactionBehavior.WhenNeeded;
        }
    }

    void BeforeCommandOutsideUnit(DbContext? db)
    {
        if (db is not null && _implicitSaves.TryGetValue(db, out var save) && ++save.Commands > 1)
        {
            throw new InvalidOperationException("The outbox: EF Core split a save into several commands although it fit in one; the first " +
                "committed apart from the rest. Report this with the entity types saved.");
        }
    }

    sealed class ImplicitSave
    {
        public int Commands;
    }

    InterceptionResult<DbTransaction> IDbTransactionInterceptor.TransactionStarting(DbConnection connection, TransactionStartingEventData eventData,
        InterceptionResult<DbTransaction> result)
    {
        UnitOf(eventData.Context)?.BeforeTransaction();
        return result;
    }

    ValueTask<InterceptionResult<DbTransaction>> IDbTransactionInterceptor.TransactionStartingAsync(DbConnection connection,
        TransactionStartingEventData eventData, InterceptionResult<DbTransaction> result, CancellationToken cancellationToken)
    {
        UnitOf(eventData.Context)?.BeforeTransaction();
        return ValueTask.FromResult(result);
    }
}

/// <summary>Puts the <see cref="DeferredTransactionInterceptor"/> on a DbContext's options, once however many registrations ask.</summary>
static class DeferredTransactions
{
    internal static void Register<TDbContext>(IServiceCollection services)
        where TDbContext : DbContext
    {
        services.TryAddSingleton<DeferredTransactionInterceptor>();
        if (services.Any(d => d.ServiceType == typeof(Marker<TDbContext>)))
            return;
        services.AddSingleton<Marker<TDbContext>>();
        services.ConfigureDbContext<TDbContext>((provider, options) =>
            {
                ContextSlotsExtension.AddTo(options);
                options.AddInterceptors(provider.GetRequiredService<DeferredTransactionInterceptor>());
            },
            ServiceLifetime.Singleton);
    }

    sealed class Marker<TDbContext>;
}

/// <summary>EF Core's automatic savepoint, off for one save.</summary>
static class Savepoints
{
    /// <summary>
    /// Saves without the <c>SAVEPOINT</c>/<c>RELEASE</c> EF Core puts around a save inside a transaction (two round trips
    /// of their own): for units of work where a failed save ends the unit and rolls the whole transaction back anyway.
    /// </summary>
    internal static async Task SaveWithoutSavepointAsync(this DbContext db, CancellationToken cancellationToken)
    {
        var database = db.Database;
        var savepoints = database.AutoSavepointsEnabled;
        database.AutoSavepointsEnabled = false;
        try
        {
            await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            database.AutoSavepointsEnabled = savepoints;
        }
    }
}
