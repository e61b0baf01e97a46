using Integration.Testing;
using NUnit.Framework;

namespace Integration.Outbox.Tests.Batching;

[TestFixture(typeof(InMemoryTransport), Category = "Integration")]
[TestFixture(typeof(RabbitMqTransport), Category = "Integration")]
public sealed class Batching_Specs<TTransport>
    where TTransport : IBatchTransport, new()
{
    TTransport _transport = default!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task Resources()
    {
        _transport = new TTransport();
        _database = await (await IntegrationInfrastructure.GetAsync()).CreateDatabaseAsync("batching");
    }

    [TearDown]
    public async Task Release()
    {
        await _transport.DisposeAsync();
        await _database.DisposeAsync();
    }

    static Task<bool> Until(Func<Task<bool>> condition, double seconds = 30) => Eventually.TrueAsync(condition, TimeSpan.FromSeconds(seconds));

    static (ChargeCard, Guid)[] Charges(params int[] amounts) => amounts.Select(a => (new ChargeCard(Guid.NewGuid(), a), Guid.NewGuid())).ToArray();

    [Test]
    public async Task When_a_full_batch_arrives_should_apply_it_in_one_transaction_and_publish_every_event()
    {
        // A time limit far beyond the spec: the batch closes because MessageLimit (10) messages joined it.
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromSeconds(50));

        await host.SendAsync(Charges(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));

        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 10)), Is.True, () => $"CardCharged delivered: {host.Received.Total} of 10");
        Assert.Multiple(async () =>
        {
            Assert.That(host.Log.Batches, Is.EqualTo(new[] { 10 }), "one call of the handler with the whole batch");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(10));
            Assert.That(await host.CountAsync("SELECT count(DISTINCT xmin::text) AS \"Value\" FROM charges"), Is.EqualTo(1),
                "every row of the batch must have been written by one transaction");
            Assert.That(await host.CountAsync("SELECT count(DISTINCT xmin::text) AS \"Value\" FROM (SELECT xmin FROM charges UNION ALL SELECT xmin FROM inbox_states) t"),
                Is.EqualTo(1), "the inbox records commit with the rows");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.EqualTo(10));
            Assert.That(host.Errors.Messages, Is.Empty);
        });
    }

    [Test]
    public async Task When_fewer_messages_than_the_limit_arrive_should_apply_them_once_the_time_limit_passed()
    {
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromMilliseconds(200));

        await host.SendAsync(Charges(1, 2, 3));

        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 3)), Is.True, () => $"CardCharged delivered: {host.Received.Total} of 3");
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(3));
    }

    [Test]
    public async Task When_one_message_of_a_batch_fails_should_move_it_to_the_error_queue_with_its_reason_and_commit_the_rest()
    {
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromSeconds(50));
        var messages = Charges(1, 2, 3, 4, 5, 6, -7, 8, 9, 10);
        var poison = messages[6];

        await host.SendAsync(messages);

        Assert.That(await Until(() => Task.FromResult(host.Errors.Messages.Count == 1 && host.Received.Total == 9)), Is.True,
            () => $"error queue: {host.Errors.Messages.Count}, CardCharged delivered: {host.Received.Total} of 9");
        var faulted = host.Errors.Messages.Single();
        Assert.Multiple(async () =>
        {
            Assert.That(faulted.MessageId, Is.EqualTo(poison.Item2), "the poison message, and only it, goes to the error queue");
            Assert.That(faulted.Reason, Does.Contain("must not be negative"), "its reason is in MT-Fault-Message");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(9));
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges WHERE \"Amount\" < 0"), Is.Zero);
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.EqualTo(9), "the failed message is not recorded: a replay applies it");
            Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM inbox_states WHERE message_id = '{poison.Item2}'"), Is.Zero);
            Assert.That(host.Log.Batches.First(), Is.EqualTo(10), "the whole batch was tried first");
        });
    }

    [Test]
    public async Task When_a_message_is_invalid_should_reject_it_before_the_batch_with_the_reason()
    {
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromMilliseconds(200));
        var messages = Charges(1, 0, 3);

        await host.SendAsync(messages);

        Assert.That(await Until(() => Task.FromResult(host.Errors.Messages.Count == 1 && host.Received.Total == 2)), Is.True,
            () => $"error queue: {host.Errors.Messages.Count}, CardCharged delivered: {host.Received.Total} of 2");
        Assert.That(host.Errors.Messages.Single().Reason, Is.EqualTo("amount must not be 0"));
        Assert.That(host.Log.Batches.Sum(), Is.EqualTo(2), "the rejected message never joined a batch");
    }

    [Test]
    public async Task When_the_same_message_id_arrives_twice_should_apply_it_once()
    {
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromMilliseconds(200));
        var twice = (new ChargeCard(Guid.NewGuid(), 5), Guid.NewGuid());

        await host.SendAsync(twice, twice, (new ChargeCard(Guid.NewGuid(), 6), Guid.NewGuid()));
        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 2)), Is.True);
        await host.SendAsync(twice);   // later, in a batch of its own
        var last = Charges(7);
        await host.SendAsync(last);

        Assert.That(await Until(async () => await host.CountAsync($"SELECT count(*) AS \"Value\" FROM inbox_states WHERE message_id = '{last[0].Item2}'") == 1),
            Is.True, "the message sent after the duplicate was not applied");
        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 3)), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM charges WHERE \"CardId\" = '{twice.Item1.CardId}'"), Is.EqualTo(1),
                "a duplicate MessageId must not charge again");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(3));
            Assert.That(host.Errors.Messages, Is.Empty, "a duplicate is acknowledged, not failed");
        });
    }

    [Test]
    public async Task When_the_consumer_crashes_after_the_commit_should_not_apply_the_redelivered_message_again()
    {
        var crash = new CrashOnceAfterCommit { Enabled = true };
        await using var host = await BatchHost.StartAsync(_transport, _database, o => o.TimeLimit = TimeSpan.FromMilliseconds(200), crash);
        var message = Charges(12);

        await host.SendAsync(message);

        Assert.That(await Until(() => Task.FromResult(crash.Crashed && crash.Deliveries == 2)), Is.True, "precondition: crashed after the commit, then delivered again");
        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 1)), Is.True);
        await host.SendAsync(Charges(13));
        Assert.That(await Until(() => Task.FromResult(host.Received.Total == 2)), Is.True, "the next message is applied");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync($"SELECT count(*) AS \"Value\" FROM charges WHERE \"CardId\" = '{message[0].Item1.CardId}'"), Is.EqualTo(1),
                "the redelivery charged the card again");
            Assert.That(host.Received.ByMessageId.Values, Is.All.EqualTo(1), "a CardCharged was published twice");
            Assert.That(host.Errors.Messages, Is.Empty);
        });
    }
}
