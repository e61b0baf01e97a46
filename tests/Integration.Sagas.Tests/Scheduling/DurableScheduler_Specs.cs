using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Scheduling;

/// <summary>MassTransit scheduling through Quartz in PostgreSQL, on real RabbitMQ: deliver, cancel, recur, survive restarts, redeliver.</summary>
[TestFixture]
[Category("Integration")]
public sealed class DurableScheduler_Specs
{
    TestBroker _broker = null!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task CreateResources()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("scheduler");
        _database = await infrastructure.CreateDatabaseAsync("scheduler");
        await SchedulerHost.CreateSchemaAsync(_database);
    }

    [TearDown]
    public async Task DropResources()
    {
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    static Uri Queue(string name) => new($"queue:{name}");

    async Task<long> Triggers()
    {
        await using var connection = new NpgsqlConnection(_database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM qrtz_triggers", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }

    [Test]
    public async Task When_a_message_is_scheduled_should_deliver_it_at_its_time_with_its_ids_and_headers()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database);
        var scheduler = host.Scheduler;
        var reminder = new Reminder(Guid.NewGuid(), "check the pump");
        var correlationId = Guid.NewGuid();
        var due = DateTime.UtcNow.AddSeconds(3);

        await scheduler.ScheduleSend(Queue("reminder"), due, reminder, Pipe.Execute<SendContext<Reminder>>(c =>
        {
            c.CorrelationId = correlationId;
            c.Headers.Set("X-Region", "north");
        }));

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(!host.Reminders.IsEmpty), TimeSpan.FromSeconds(30)), Is.True, "never delivered");
        var delivered = host.Reminders.Single();
        var arrived = DateTime.UtcNow;
        Assert.That(delivered.Message, Is.EqualTo(reminder));
        Assert.That(arrived, Is.GreaterThanOrEqualTo(due.AddMilliseconds(-100)), "delivered before its time");
        Assert.That(delivered.CorrelationId, Is.EqualTo(correlationId));
        Assert.That(delivered.Headers.Get<string>("X-Region"), Is.EqualTo("north"));
        Assert.That(await Eventually.TrueAsync(async () => await Triggers() == 0, TimeSpan.FromSeconds(10)), Is.True, "a fired one-off trigger must be removed");
    }

    [Test]
    public async Task When_a_scheduled_message_is_cancelled_should_never_deliver_it()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database);
        var scheduler = host.Scheduler;
        var kept = new Reminder(Guid.NewGuid(), "kept");
        var cancelled = new Reminder(Guid.NewGuid(), "cancelled");

        var handle = await scheduler.ScheduleSend(Queue("reminder"), DateTime.UtcNow.AddSeconds(3), cancelled);
        await scheduler.ScheduleSend(Queue("reminder"), DateTime.UtcNow.AddSeconds(4), kept);
        Assert.That(await Eventually.TrueAsync(async () => await Triggers() == 2, TimeSpan.FromSeconds(10)), Is.True, "precondition: both stored");
        await scheduler.CancelScheduledSend(Queue("reminder"), handle.TokenId);
        Assert.That(await Eventually.TrueAsync(async () => await Triggers() == 1, TimeSpan.FromSeconds(10)), Is.True, "the cancel did not remove the trigger");

        // The kept one, due after the cancelled one, arriving proves the cancelled one's time has passed.
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Reminders.Any(r => r.Message == kept)), TimeSpan.FromSeconds(30)), Is.True);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(host.Reminders.Select(r => r.Message), Does.Not.Contain(cancelled), "a cancelled message was delivered");
    }

    [Test]
    public async Task When_the_host_is_down_at_the_due_time_should_deliver_after_a_new_host_starts()
    {
        var reminder = new Reminder(Guid.NewGuid(), "after restart");
        await using (var first = await SchedulerHost.StartAsync(_broker, _database))
        {
            var scheduler = first.Scheduler;
            await scheduler.ScheduleSend(Queue("reminder"), DateTime.UtcNow.AddSeconds(2), reminder);
            Assert.That(await Eventually.TrueAsync(async () => await Triggers() == 1, TimeSpan.FromSeconds(10)), Is.True, "precondition: stored");
        }

        await Task.Delay(TimeSpan.FromSeconds(3)); // due while no host runs

        await using var second = await SchedulerHost.StartAsync(_broker, _database);
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(second.Reminders.Any(r => r.Message == reminder)), TimeSpan.FromSeconds(30)), Is.True,
            "the message scheduled before the restart was never delivered");
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(second.Reminders.Count(r => r.Message == reminder), Is.EqualTo(1));
    }

    [Test]
    public async Task When_a_recurring_message_is_scheduled_should_deliver_it_repeatedly_until_cancelled()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database);
        var scheduler = host.Scheduler;
        var recurring = host.RecurringScheduler;
        var reminder = new Reminder(Guid.NewGuid(), "every second");

        var handle = await recurring.ScheduleRecurringSend(Queue("reminder"), new EverySecond(), reminder);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Reminders.Count >= 2), TimeSpan.FromSeconds(30)), Is.True, "did not recur");
        await recurring.CancelScheduledRecurringSend(handle.Schedule.ScheduleId, handle.Schedule.ScheduleGroup);
        Assert.That(await Eventually.TrueAsync(async () => await Triggers() == 0, TimeSpan.FromSeconds(10)), Is.True, "the recurring trigger was not removed");
        var count = host.Reminders.Count;
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.That(host.Reminders.Count, Is.LessThanOrEqualTo(count + 1), "kept recurring after the cancel");
        Assert.That(scheduler, Is.Not.Null);
    }

    [Test]
    public async Task When_a_consumer_fails_with_scheduled_redelivery_should_redeliver_through_the_scheduler()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database);
        var work = new FlakyWork(Guid.NewGuid());

        await (await host.Bus.GetSendEndpoint(Queue("flaky"))).Send(work);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.FlakyAttempts.Count(a => a.Message == work) >= 2), TimeSpan.FromSeconds(30)), Is.True,
            "the failed message was not redelivered");
        var second = host.FlakyAttempts.Where(a => a.Message == work).ElementAt(1);
        Assert.That(second.GetRedeliveryCount(), Is.EqualTo(1));
        Assert.That(await _broker.QueueMessageCountAsync("flaky_error"), Is.Null.Or.EqualTo(0), "nothing may reach the error queue");
    }

    [Test]
    public async Task When_a_state_machine_schedules_on_an_endpoint_ConfigureEndpoints_created_should_fire_its_timeout()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database);
        var id = Guid.NewGuid();

        await host.Bus.Publish(new TimeoutStarted(id, "configured"));

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Expired.Any(e => e.Id == id)), TimeSpan.FromSeconds(30)), Is.True,
            "the saga's Schedule(...) never came back through the durable scheduler");
    }

    [Test]
    public void When_a_hand_configured_endpoint_schedules_without_the_scheduler_should_fail_start_naming_the_call()
    {
        var failure = Assert.CatchAsync(() => SchedulerHost.StartAsync(_broker, _database, sagaEndpoint: false));

        var messages = string.Join(" | ", Chain(failure!).Select(e => e.Message));
        Assert.That(messages, Does.Contain("'timeouts-by-hand' schedule messages but have no message scheduler: call e.UseIntegrationScheduler(context)"));
    }

    [Test]
    public async Task When_a_hand_configured_endpoint_uses_the_scheduler_should_fire_its_timeout()
    {
        await using var host = await SchedulerHost.StartAsync(_broker, _database, sagaEndpoint: true);
        var id = Guid.NewGuid();

        await (await host.Bus.GetSendEndpoint(Queue("timeouts-by-hand"))).Send(new TimeoutStarted(id, "by hand"));

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(host.Expired.Any(e => e.Id == id)), TimeSpan.FromSeconds(30)), Is.True,
            "the hand-configured saga's timeout never fired");
    }

    [Test]
    public async Task When_two_applications_share_the_virtual_host_and_database_should_each_fire_only_their_own_schedules()
    {
        var scheduled = new System.Collections.Concurrent.ConcurrentBag<(object? Scope, string Instrument)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == SagasTelemetry.Name)
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, _, _) => scheduled.Add((instrument.Meter.Scope, instrument.Name)));
        listener.Start();
        await using var billing = await SchedulerHost.StartAsync(_broker, _database, serviceName: "billing", reminderQueue: "billing-reminder");
        await using var shipping = await SchedulerHost.StartAsync(_broker, _database, serviceName: "shipping", reminderQueue: "shipping-reminder");
        var billingMeters = billing.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var shippingMeters = shipping.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var due = DateTime.UtcNow.AddSeconds(4);

        for (var i = 0; i < 5; i++)
        {
            await billing.Scheduler
                .ScheduleSend(Queue("billing-reminder"), due, new Reminder(Guid.NewGuid(), $"billing {i}"));
            await shipping.Scheduler
                .ScheduleSend(Queue("shipping-reminder"), due, new Reminder(Guid.NewGuid(), $"shipping {i}"));
        }

        Assert.That(await Eventually.TrueAsync(async () => await TriggersBySchedulerAsync() is { Count: 2 } t && t.Values.All(n => n == 5), TimeSpan.FromSeconds(10)),
            Is.True, () => $"each application's Quartz must store its own schedules: {string.Join(", ", TriggersBySchedulerAsync().Result)}");
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(billing.Reminders.Count == 5 && shipping.Reminders.Count == 5), TimeSpan.FromSeconds(40)),
            Is.True, () => $"delivered: billing {billing.Reminders.Count}, shipping {shipping.Reminders.Count}");
        Assert.Multiple(async () =>
        {
            Assert.That(await _broker.QueueMessageCountAsync("billing-scheduler"), Is.Not.Null, "billing's scheduler queue");
            Assert.That(await _broker.QueueMessageCountAsync("shipping-scheduler"), Is.Not.Null, "shipping's scheduler queue");
            Assert.That(await _broker.QueueMessageCountAsync("scheduler"), Is.Null, "no shared default queue");
            Assert.That(scheduled.Count(m => m.Instrument == "integration.scheduler.scheduled" && ReferenceEquals(m.Scope, billingMeters)), Is.EqualTo(5),
                "billing's scheduler stored billing's five, and only those");
            Assert.That(scheduled.Count(m => m.Instrument == "integration.scheduler.delivered" && ReferenceEquals(m.Scope, billingMeters)), Is.EqualTo(5),
                "billing's Quartz fired billing's five, and only those");
            Assert.That(scheduled.Count(m => m.Instrument == "integration.scheduler.delivered" && ReferenceEquals(m.Scope, shippingMeters)), Is.EqualTo(5),
                "shipping's Quartz fired shipping's five, and only those");
            Assert.That(billing.Reminders.Select(r => r.Message.Text), Has.All.StartWith("billing"));
            Assert.That(shipping.Reminders.Select(r => r.Message.Text), Has.All.StartWith("shipping"));
        });
    }

    async Task<Dictionary<string, long>> TriggersBySchedulerAsync()
    {
        await using var connection = new NpgsqlConnection(_database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT sched_name, count(*) FROM qrtz_triggers GROUP BY sched_name", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var result = new Dictionary<string, long>();
        while (await reader.ReadAsync())
            result[reader.GetString(0)] = reader.GetInt64(1);
        return result;
    }

    static IEnumerable<Exception> Chain(Exception exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            yield return current;
            if (current is AggregateException aggregate)
            {
                foreach (var inner in aggregate.Flatten().InnerExceptions)
                    yield return inner;
            }
        }
    }

    sealed class EverySecond : MassTransit.Scheduling.DefaultRecurringSchedule
    {
        public EverySecond()
        {
            CronExpression = "* * * * * ?";
            ScheduleGroup = "specs";
        }
    }
}
