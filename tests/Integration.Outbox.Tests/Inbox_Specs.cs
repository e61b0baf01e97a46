using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

[TestFixture]
[Category("Integration")]
public sealed class Inbox_Specs
{
    TestBroker _broker = null!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task Resources()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("inbox");
        _database = await infrastructure.CreateDatabaseAsync("inbox");
    }

    [TearDown]
    public async Task Release()
    {
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    static Task<bool> Until(Func<bool> condition, double seconds = 20) =>
        Eventually.TrueAsync(() => Task.FromResult(condition()), TimeSpan.FromSeconds(seconds));

    async Task Send(OutboxHost host, ChargeCard message, Guid messageId)
    {
        var endpoint = await host.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri("queue:charges"));
        await endpoint.Send(message, Pipe.Execute<SendContext<ChargeCard>>(c => c.MessageId = messageId));
    }

    [Test]
    public async Task When_the_consumer_process_is_killed_after_its_commit_should_not_repeat_the_effect_on_redelivery()
    {
        // This process only sends (and creates the schema); the consumer is a child process that SIGKILLs itself
        // right after the inbox transaction committed, before MassTransit could ack the message.
        await using var sender = await OutboxHost.StartAsync(_broker, _database, relay: false);
        var card = Guid.NewGuid();
        var messageId = Guid.NewGuid();
        using (var first = await ConsumerProcess.StartAsync(_broker, _database, killAfterCommit: true))
        {
            await Send(sender, new ChargeCard(card, 40), messageId);
            Assert.That(await Until(() => first.Process.HasExited, 30), Is.True, () => $"the consumer did not die:\n{first.Output}");
            Assert.That(first.Printed(ConsumerProcess.Committed), Is.True, () => $"precondition: killed after the commit:\n{first.Output}");
        }

        Assert.That(await sender.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(1), "precondition: the first delivery committed its effect");
        Assert.That(await Eventually.TrueAsync(async () => await _broker.QueueMessageCountAsync("charges") == 1, TimeSpan.FromSeconds(20)), Is.True,
            "precondition: the broker still holds the unacknowledged message after the kill");

        using var second = await ConsumerProcess.StartAsync(_broker, _database, killAfterCommit: false);
        Assert.That(await Eventually.TrueAsync(async () => await _broker.QueueMessageCountAsync("charges") == 0 && second.Printed("already consumed"),
            TimeSpan.FromSeconds(30)), Is.True, () => $"the redelivery was not acknowledged as a duplicate:\n{second.Output}");
        Assert.That(await Until(() => sender.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NOT NULL").Result == 1), Is.True,
            "the CardCharged committed with the first delivery was not delivered");
        Assert.Multiple(async () =>
        {
            Assert.That(await sender.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(1), "the redelivery charged the card again");
            Assert.That(await sender.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.EqualTo(1), "CardCharged written twice");
            Assert.That(await sender.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.EqualTo(1));
            Assert.That(await _broker.QueueMessageCountAsync("charges_error") ?? 0, Is.Zero, "the redelivery must succeed as a duplicate");
        });
    }

    [Test]
    public async Task When_the_consumer_crashes_after_its_commit_should_not_repeat_the_effect_on_redelivery()
    {
        var crash = new CrashOnceAfterCommit { Enabled = true };
        await using var host = await OutboxHost.StartAsync(_broker, _database, inbox: crash);
        var card = Guid.NewGuid();

        await Send(host, new ChargeCard(card, 40), Guid.NewGuid());

        Assert.That(await Until(() => host.Received.Total == 1), Is.True, "the CardCharged produced the first time was not delivered");
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states").Result == 1), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(crash.Crashed, Is.True, "precondition: the consumer crashed after its commit");
        Assert.That(crash.Deliveries, Is.EqualTo(2), "precondition: the message was delivered again after the crash");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(1), "the redelivery charged the card again");
            Assert.That(host.Received.Total, Is.EqualTo(1), "CardCharged published twice");
            Assert.That(await _broker.QueueMessageCountAsync("charges_error") ?? 0, Is.Zero, "the redelivery must succeed as a duplicate");
        });
    }

    [Test]
    public async Task When_the_same_message_id_arrives_twice_should_apply_it_once()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, inbox: new CrashOnceAfterCommit());
        var messageId = Guid.NewGuid();

        await Send(host, new ChargeCard(Guid.NewGuid(), 10), messageId);
        await Send(host, new ChargeCard(Guid.NewGuid(), 10), messageId);
        await Send(host, new ChargeCard(Guid.NewGuid(), 20), Guid.NewGuid());

        Assert.That(await Until(() => host.Received.Total == 2), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(2));
        Assert.That(host.Received.Total, Is.EqualTo(2));
    }

    [Test]
    public async Task When_the_consumer_fails_should_roll_back_its_writes_its_messages_and_the_inbox_record()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, inbox: new CrashOnceAfterCommit());

        await Send(host, new ChargeCard(Guid.NewGuid(), -5), Guid.NewGuid());

        Assert.That(await Eventually.TrueAsync(async () => await _broker.QueueMessageCountAsync("charges_error") == 1, TimeSpan.FromSeconds(20)), Is.True,
            "the failing message should end in the error queue after its retries");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.Zero);
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.Zero);
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.Zero, "a failed message must be processed again when replayed");
        });
    }

    [Test]
    public async Task When_a_first_delivery_only_tracks_its_writes_should_commit_them_with_the_inbox_record_in_one_command()
    {
        var commands = new CommandCounter();
        await using var host = await OutboxHost.StartAsync(_broker, _database, inbox: new CrashOnceAfterCommit(), interceptor: commands);
        await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges");
        commands.Reset();

        await Send(host, new ChargeCard(Guid.NewGuid(), 30), Guid.NewGuid());

        Assert.That(await Until(() => host.Received.Total == 1), Is.True, "the charge's CardCharged never arrived");
        Assert.Multiple(() =>
        {
            // The charge, its CardCharged outbox row and the inbox record: one batched command, committed by PostgreSQL's
            // implicit transaction (no BEGIN, no COMMIT round trip).
            Assert.That(commands.Inserts, Is.EqualTo(1), "the consumer's writes and the inbox record should go in one command");
            Assert.That(commands.Transactions, Is.Zero, "nothing needed an explicit transaction");
        });
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(1));
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.EqualTo(1));
        });
    }

    [Test]
    public async Task When_the_consumer_writes_through_raw_sql_and_fails_should_roll_that_write_back_too()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, inbox: new CrashOnceAfterCommit());

        await Send(host, new ChargeCard(Guid.NewGuid(), ChargeCardConsumer.RawWriteThenFail), Guid.NewGuid());

        Assert.That(await Eventually.TrueAsync(async () => await _broker.QueueMessageCountAsync("charges_error") == 1, TimeSpan.FromSeconds(20)), Is.True,
            "the failing message should end in the error queue after its retries");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.Zero,
                "the raw INSERT ran in the message's transaction and must roll back with it");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.Zero);
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM inbox_states"), Is.Zero);
        });
    }
}

/// <summary>Counts the INSERT commands and the explicit transactions of the DbContext it is on.</summary>
sealed class CommandCounter : Microsoft.EntityFrameworkCore.Diagnostics.DbCommandInterceptor, Microsoft.EntityFrameworkCore.Diagnostics.IDbTransactionInterceptor
{
    int _inserts;
    int _transactions;

    public int Inserts => Volatile.Read(ref _inserts);
    public int Transactions => Volatile.Read(ref _transactions);

    public void Reset()
    {
        Interlocked.Exchange(ref _inserts, 0);
        Interlocked.Exchange(ref _transactions, 0);
    }

    public override ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader>> ReaderExecutingAsync(
        System.Data.Common.DbCommand command, Microsoft.EntityFrameworkCore.Diagnostics.CommandEventData eventData,
        Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader> result, CancellationToken cancellationToken = default)
    {
        Count(command);
        return ValueTask.FromResult(result);
    }

    public override ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int>> NonQueryExecutingAsync(System.Data.Common.DbCommand command,
        Microsoft.EntityFrameworkCore.Diagnostics.CommandEventData eventData, Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<int> result,
        CancellationToken cancellationToken = default)
    {
        Count(command);
        return ValueTask.FromResult(result);
    }

    public ValueTask<System.Data.Common.DbTransaction> TransactionStartedAsync(System.Data.Common.DbConnection connection,
        Microsoft.EntityFrameworkCore.Diagnostics.TransactionEndEventData eventData, System.Data.Common.DbTransaction result, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _transactions);
        return ValueTask.FromResult(result);
    }

    void Count(System.Data.Common.DbCommand command)
    {
        if (command.CommandText.TrimStart().StartsWith("INSERT", StringComparison.OrdinalIgnoreCase))
            Interlocked.Increment(ref _inserts);
    }
}
