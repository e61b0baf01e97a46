using System.Collections.Concurrent;
using Integration.Sagas.Postgres;
using Integration.Testing;
using MassTransit;
using MassTransit.Saga;
using MassTransit.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Postgres;

public interface IConcurrencyModeCase
{
    SagaConcurrencyMode Mode { get; }
}

public sealed class OptimisticMode : IConcurrencyModeCase
{
    public SagaConcurrencyMode Mode => SagaConcurrencyMode.Optimistic;
}

public sealed class PessimisticMode : IConcurrencyModeCase
{
    public SagaConcurrencyMode Mode => SagaConcurrencyMode.Pessimistic;
}

/// <summary>The saga repository's contract, written once and run on every concurrency mode, on real RabbitMQ and PostgreSQL.</summary>
[Category("Integration")]
public abstract class SagaRepository_Specs<TMode>
    where TMode : IConcurrencyModeCase, new()
{
    static readonly SagaConcurrencyMode Mode = new TMode().Mode;
    readonly ConcurrentBag<Counted> _counted = [];
    CounterSagaBus _bus = null!;

    ITestHarness _harness => _bus.Harness;
    RoundTrips _roundTrips => _bus.RoundTrips;
    ServiceProvider _provider => _bus.Provider;

    [SetUp]
    public async Task Start()
    {
        _counted.Clear();
        _bus = await CounterSagaBus.StartAsync("saga-repo", concurrentMessageLimit: 32, o =>
            {
                o.ConcurrencyMode = Mode;
                o.ConflictRetryLimit = 100;
            }, prefetch: 64,
            bus: x => x.AddHandler<Counted>(context =>
            {
                _counted.Add(context.Message);
                return Task.CompletedTask;
            }),
            created: db => db.Database.ExecuteSqlRawAsync("CREATE TABLE IF NOT EXISTS counter_audits (correlation_id uuid NOT NULL)"));
    }

    [TearDown]
    public async Task Stop() => await _bus.DisposeAsync();

    Task<CounterState?> Stored(Guid id) => _bus.Stored(id);

    Task<bool> Eventually(Func<CounterState?, bool> condition, Guid id) => _bus.Eventually(condition, id, TimeSpan.FromMilliseconds(100));

    [Test]
    public async Task When_an_event_starts_an_instance_should_store_it_in_its_state()
    {
        var id = NewId.NextGuid();

        await _harness.Bus.Publish(new CounterStarted(id, "pumps"));

        Assert.That(await Eventually(s => s is { CurrentState: "Counting" }, id), Is.True, "the instance was never stored");
        var stored = await Stored(id);
        Assert.That(stored!.Name, Is.EqualTo("pumps"));
    }

    [Test]
    public async Task When_an_instance_is_stored_should_use_snake_case_columns_in_the_mapped_schema()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "gauges"));
        Assert.That(await Eventually(s => s is not null, id), Is.True);

        await using var scope = _provider.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
        var columns = await db.Database.SqlQueryRaw<string>(
            "SELECT column_name AS \"Value\" FROM information_schema.columns WHERE table_schema = 'sagas' AND table_name = 'counter_state' ORDER BY column_name").ToListAsync();
        var indexes = await db.Database.SqlQueryRaw<string>(
            "SELECT indexname AS \"Value\" FROM pg_indexes WHERE schemaname = 'sagas' AND tablename = 'counter_state' ORDER BY indexname").ToListAsync();

        Assert.That(columns, Is.EqualTo(new[] { "correlation_id", "count", "current_state", "name" }));
        Assert.That(indexes, Is.EqualTo(new[] { "ix_counter_state_name", "pk_counter_state" }));
    }

    [Test]
    public async Task When_100_events_for_one_instance_arrive_concurrently_should_apply_every_one_and_publish_each_count_once()
    {
        var id = NewId.NextGuid();

        // No start event: the first increments race to create the instance (duplicate inserts), the rest race to update it.
        await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => _harness.Bus.Publish(new CounterIncremented(id))));

        Assert.That(await Eventually(s => s?.Count >= 100, id), Is.True, () => $"count is {Stored(id).Result?.Count}, expected 100");
        Assert.That((await Stored(id))!.Count, Is.EqualTo(100), "an increment was applied twice");
        Assert.That(await Integration.Testing.Eventually.TrueAsync(() => Task.FromResult(_counted.Count >= 100), TimeSpan.FromSeconds(20)), Is.True);
        await Task.Delay(500);
        Assert.That(_counted.Where(c => c.CounterId == id).Select(c => c.Count).Order(), Is.EqualTo(Enumerable.Range(1, 100)),
            "each count must be published exactly once: a gap is a lost update, a repeat is a message leaked from a rolled-back attempt");
        Assert.That(await _harness.Published.Any<Fault<CounterIncremented>>(), Is.False, "an increment faulted");
    }

    [Test]
    public async Task When_an_event_updates_an_instance_should_read_and_write_it_without_a_savepoint()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "filters"));
        Assert.That(await Eventually(s => s is not null, id), Is.True);
        _roundTrips.Reset();

        await _harness.Bus.Publish(new CounterIncremented(id));

        Assert.That(await Eventually(s => s?.Count == 1, id), Is.True, "the increment was never applied");
        Assert.That(await Integration.Testing.Eventually.TrueAsync(() => Task.FromResult(_roundTrips.Commands.Contains("UPDATE")), TimeSpan.FromSeconds(10)), Is.True,
            "the event's write never ran");
        Assert.Multiple(() =>
        {
            Assert.That(_roundTrips.Savepoints, Is.Zero, "EF Core's automatic savepoint must be off for the repository's own save");
            Assert.That(_roundTrips.Commands, Is.EqualTo(new[] { "SELECT", "UPDATE" }), "one read and one write per event");
            if (Mode == SagaConcurrencyMode.Optimistic)
            {
                // The read on its own, the UPDATE (xmin-checked) committing by itself: two round trips, no BEGIN/COMMIT.
                Assert.That(_roundTrips.Commits, Is.Zero, "optimistic mode needs no explicit transaction for an event that only updates its instance");
                Assert.That(_roundTrips.InTransaction, Is.Zero, "no command of the event should run in an explicit transaction");
            }
            else
            {
                // BEGIN rides on the SELECT ... FOR UPDATE; then the UPDATE batch and the COMMIT: three round trips.
                Assert.That(_roundTrips.Commits, Is.EqualTo(1), "pessimistic mode holds the row lock in one transaction");
            }
        });
    }

    [Test]
    public async Task When_the_machine_runs_a_command_of_its_own_should_commit_it_with_the_instance()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "gaskets"));
        Assert.That(await Eventually(s => s is not null, id), Is.True);
        _roundTrips.Reset();

        // The machine writes an audit row through raw SQL and then fails: the row must roll back with the instance.
        await _harness.Bus.Publish(new CounterAudited(id, Fail: true));
        Assert.That(await _harness.Published.Any<Fault<CounterAudited>>(), Is.True, "the failing event should fault");
        await _harness.Bus.Publish(new CounterAudited(id, Fail: false));

        Assert.That(await Eventually(s => s?.Count == 1, id), Is.True, "the audited event never reached the instance");
        await using var scope = _provider.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CounterDbContext>();
        var audits = await db.Database.SqlQueryRaw<long>("SELECT count(*) AS \"Value\" FROM counter_audits WHERE correlation_id = {0}", id).SingleAsync();
        Assert.Multiple(() =>
        {
            Assert.That(audits, Is.EqualTo(1), "the failed attempt's audit row must have rolled back with it; the successful one committed");
            Assert.That(_roundTrips.Commits, Is.GreaterThanOrEqualTo(1), "a command of the machine runs in the event's transaction");
        });
    }

    [Test]
    public async Task When_the_instance_is_finalized_should_delete_it()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "valves"));
        Assert.That(await Eventually(s => s is not null, id), Is.True);

        await _harness.Bus.Publish(new CounterStopped(id));

        Assert.That(await Eventually(s => s is null, id), Is.True, "a finalized instance must be removed");
    }

    [Test]
    public async Task When_an_event_correlates_by_a_query_should_update_the_matching_instance()
    {
        var id = NewId.NextGuid();
        var name = "name-" + id.ToString("N");
        await _harness.Bus.Publish(new CounterStarted(id, name));
        Assert.That(await Eventually(s => s is not null, id), Is.True);

        await _harness.Bus.Publish(new CounterRenamed(name, "renamed-" + id.ToString("N")));

        Assert.That(await Eventually(s => s?.Name == "renamed-" + id.ToString("N"), id), Is.True, "the query-correlated event never reached the instance");
    }

    [Test]
    public async Task When_loaded_or_queried_through_the_repository_should_return_committed_instances()
    {
        var id = NewId.NextGuid();
        await _harness.Bus.Publish(new CounterStarted(id, "hoses-" + id.ToString("N")));
        Assert.That(await Eventually(s => s is not null, id), Is.True);

        var load = _provider.GetRequiredService<ILoadSagaRepository<CounterState>>();
        var query = _provider.GetRequiredService<IQuerySagaRepository<CounterState>>();
        var loaded = await load.Load(id);
        var found = await query.Find(new SagaQuery<CounterState>(s => s.Name == "hoses-" + id.ToString("N")));

        Assert.That(loaded?.Name, Is.EqualTo("hoses-" + id.ToString("N")));
        Assert.That(found, Is.EqualTo(new[] { id }));
    }
}

/// <summary>Counts what the saga's DbContext sends in transactions: commands by their first keyword, savepoints, commits.</summary>
sealed class RoundTrips : Microsoft.EntityFrameworkCore.Diagnostics.DbTransactionInterceptor, Microsoft.EntityFrameworkCore.Diagnostics.IDbCommandInterceptor
{
    /// <summary>Tags the specs' own polling reads, which are not counted.</summary>
    public const string SpecTag = "spec-read";

    readonly ConcurrentQueue<string> _commands = new();
    int _savepoints;
    int _commits;
    int _inTransaction;

    public IReadOnlyList<string> Commands => [.. _commands];
    public int Savepoints => Volatile.Read(ref _savepoints);
    public int Commits => Volatile.Read(ref _commits);
    public int InTransaction => Volatile.Read(ref _inTransaction);

    public void Reset()
    {
        _commands.Clear();
        Interlocked.Exchange(ref _savepoints, 0);
        Interlocked.Exchange(ref _commits, 0);
        Interlocked.Exchange(ref _inTransaction, 0);
    }

    public override ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult> CreatingSavepointAsync(System.Data.Common.DbTransaction transaction,
        Microsoft.EntityFrameworkCore.Diagnostics.TransactionEventData eventData, Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult result,
        CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _savepoints);
        return base.CreatingSavepointAsync(transaction, eventData, result, cancellationToken);
    }

    public override Task TransactionCommittedAsync(System.Data.Common.DbTransaction transaction, Microsoft.EntityFrameworkCore.Diagnostics.TransactionEndEventData eventData,
        CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _commits);
        return base.TransactionCommittedAsync(transaction, eventData, cancellationToken);
    }

    public ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader>> ReaderExecutingAsync(System.Data.Common.DbCommand command,
        Microsoft.EntityFrameworkCore.Diagnostics.CommandEventData eventData, Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader> result,
        CancellationToken cancellationToken = default)
    {
        Record(command);
        return ValueTask.FromResult(result);
    }

    public ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int>> NonQueryExecutingAsync(System.Data.Common.DbCommand command,
        Microsoft.EntityFrameworkCore.Diagnostics.CommandEventData eventData, Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        Record(command);
        return ValueTask.FromResult(result);
    }

    void Record(System.Data.Common.DbCommand command)
    {
        var text = command.CommandText.TrimStart();
        if (text.StartsWith("-- " + SpecTag, StringComparison.Ordinal))
            return;
        _commands.Enqueue(text.Split(' ', 2)[0].ToUpperInvariant());
        if (command.Transaction is not null)
            Interlocked.Increment(ref _inTransaction);
    }
}

[TestFixture]
public sealed class Optimistic_saga_repository : SagaRepository_Specs<OptimisticMode>;

[TestFixture]
public sealed class Pessimistic_saga_repository : SagaRepository_Specs<PessimisticMode>;
