using FsCheck;
using FsCheck.Fluent;
using Integration.Outbox.Writing;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

/// <summary>
/// Property (FsCheck): for random interleavings of concurrent transactions — each open at the same time on its own
/// connection, publishing several messages through the outbox, then saving and committing or rolling back, the steps
/// of all of them interleaved in a random order — the messages of one transaction are delivered in their publish order,
/// every committed message is delivered exactly once, and no rolled-back message is ever delivered. One host (relay and
/// a one-at-a-time consumer) serves every case; each case's messages carry the case number.
/// </summary>
/// <remarks>
/// Each transaction saves after every publish and once more at the end. The outbox's unit of order is the database
/// transaction: the first version of this property found that several saves in one transaction made several units,
/// which the relay delivered in parallel (<c>t0</c> delivered as 0, 2, 1, 3); the outbox now keeps one
/// <c>transaction_id</c> while the same database transaction is open.
/// </remarks>
[TestFixture]
[Category("Integration")]
public sealed class OutboxProperty_Specs
{
    /// <summary>One transaction of a case: how many messages it publishes, and whether it commits.</summary>
    public sealed record Transaction(int Messages, bool Commits);

    /// <summary>A case: the transactions, and the interleaving — each entry is a transaction's next step (publish, or at its last entry commit/roll back).</summary>
    public sealed record Schedule(IReadOnlyList<Transaction> Transactions, IReadOnlyList<int> Steps)
    {
        public override string ToString() =>
            $"{string.Join(", ", Transactions.Select((t, i) => $"t{i}: {t.Messages} then {(t.Commits ? "commit" : "rollback")}"))}; steps: {string.Join(" ", Steps.Select(s => $"t{s}"))}";
    }

    static Gen<Schedule> Schedules() =>
        from count in Gen.Choose(2, 4)
        from transactions in Gen.ArrayOf(
            from messages in Gen.Choose(1, 4)
            from commits in Gen.Frequency((3, Gen.Constant(true)), (1, Gen.Constant(false)))
            select new Transaction(messages, commits), count)
        from steps in Gen.Shuffle(transactions.SelectMany((t, i) => Enumerable.Repeat(i, t.Messages + 1)).ToArray())
        select new Schedule(transactions, steps);

    [Test]
    public async Task Interleaved_transactions_should_deliver_each_committed_message_once_in_publish_order_and_no_rolled_back_one()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("outbox-property");
        await using var database = await infrastructure.CreateDatabaseAsync("outbox-property");
        await using var host = await OutboxHost.StartAsync(broker, database, consume: true);
        var number = 0;

        var property = Prop.ForAll(Arb.From(Schedules()), schedule => Holds(host, $"c{Interlocked.Increment(ref number)}", schedule).GetAwaiter().GetResult());
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(25).WithQuietOnSuccess(true), property);
    }

    static async Task<bool> Holds(OutboxHost host, string name, Schedule schedule)
    {
        var scopes = new List<AsyncServiceScope>();
        try
        {
            var open = new List<(ShopDbContext Db, IOutbox Outbox, Microsoft.EntityFrameworkCore.Storage.IDbContextTransaction Transaction)>();
            foreach (var _ in schedule.Transactions)
            {
                var scope = host.Services.CreateAsyncScope();
                scopes.Add(scope);
                var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
                open.Add((db, scope.ServiceProvider.GetRequiredService<IOutbox>(), await db.Database.BeginTransactionAsync()));
            }

            var published = new int[schedule.Transactions.Count];
            foreach (var t in schedule.Steps)
            {
                var (db, outbox, transaction) = open[t];
                if (published[t] < schedule.Transactions[t].Messages)
                {
                    var widget = new Widget { Id = Guid.NewGuid(), Name = $"{name}-t{t}" };
                    db.Widgets.Add(widget);
                    outbox.Publish(new WidgetCreated(widget.Id, widget.Name, published[t]++));
                    await db.SaveChangesAsync();   // several saves in one transaction: still one unit of order
                }
                else
                {
                    await db.SaveChangesAsync();
                    if (schedule.Transactions[t].Commits)
                        await transaction.CommitAsync();
                    else
                        await transaction.RollbackAsync();
                }
            }
        }
        finally
        {
            foreach (var scope in scopes)
                await scope.DisposeAsync();
        }

        // A marker written after every transaction ended: once it is in, so is everything committed before it.
        var marker = await host.WriteAsync(1, start: -1);
        var committed = schedule.Transactions.Where(t => t.Commits).Sum(t => t.Messages);
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Received.ByMessageId.ContainsKey(marker[0])
            && host.Received.InOrder.Count(r => r.Message.Name.StartsWith(name + "-", StringComparison.Ordinal)) >= committed), TimeSpan.FromSeconds(20)),
            Is.True, $"not every committed message was delivered: {schedule}");

        var received = host.Received.InOrder.Where(r => r.Message.Name.StartsWith(name + "-", StringComparison.Ordinal)).ToList();
        for (var t = 0; t < schedule.Transactions.Count; t++)
        {
            var numbers = received.Where(r => r.Message.Name == $"{name}-t{t}").Select(r => r.Message.Number).ToList();
            var expected = schedule.Transactions[t].Commits ? Enumerable.Range(0, schedule.Transactions[t].Messages) : [];
            Assert.That(numbers, Is.EqualTo(expected), $"t{t}: {(schedule.Transactions[t].Commits ? "each once, in publish order" : "rolled back: never delivered")}; {schedule}");
        }

        Assert.That(received.Select(r => r.MessageId).Distinct().Count(), Is.EqualTo(received.Count), $"a message was delivered twice: {schedule}");
        return true;
    }
}
