using System.Diagnostics;
using Integration.Outbox.Writing;
using Integration.Outbox.Relay;
using Integration.Testing;
using Integration.Testing.Faults;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

[TestFixture]
[Category("Integration")]
public sealed class Outbox_Specs
{
    TestBroker _broker = null!;
    TestDatabase _database = null!;

    [SetUp]
    public async Task Resources()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        _broker = await infrastructure.CreateVirtualHostAsync("outbox");
        _database = await infrastructure.CreateDatabaseAsync("outbox");
    }

    [TearDown]
    public async Task Release()
    {
        await _broker.DisposeAsync();
        await _database.DisposeAsync();
    }

    static Task<bool> Until(Func<bool> condition, double seconds = 20) =>
        Eventually.TrueAsync(() => Task.FromResult(condition()), TimeSpan.FromSeconds(seconds));

    [Test]
    public async Task When_the_transaction_commits_should_deliver_at_once_with_the_same_message_id()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true);

        var stopwatch = Stopwatch.StartNew();
        var ids = await host.WriteAsync(1);

        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(ids[0]), 10), Is.True, "not delivered");
        Assert.That(stopwatch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "the poll is 30 s here: only the commit's NOTIFY can deliver this quickly");
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL").Result == 0), Is.True,
            "delivered messages must be marked");
    }

    [Test]
    public async Task When_this_process_commits_should_send_directly_without_a_claim_or_a_notify()
    {
        var delivered = new System.Collections.Concurrent.ConcurrentBag<(object? Scope, string? Path)>();
        using var meters = new System.Diagnostics.Metrics.MeterListener();
        meters.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == OutboxDiagnostics.Name && instrument.Name == "integration.outbox.delivered")
                l.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((instrument, _, tags, _) =>
        {
            string? path = null;
            foreach (var tag in tags)
                path = tag.Key == "integration.outbox.delivery" ? tag.Value as string : path;
            delivered.Add((instrument.Meter.Scope, path));
        });
        meters.Start();
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = true);
        var scope = host.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        await using var listener = await OutboxListener.StartAsync(_database.ConnectionString);

        var ids = new List<Guid>();
        for (var t = 0; t < 5; t++)
            ids.AddRange(await host.WriteAsync(2, start: t * 2));

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey), 10), Is.True, "not delivered");
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL OR lock_token IS NOT NULL").Result == 0),
            Is.True, "the direct deliveries must be marked delivered and their lease cleared");
        await listener.WaitAsync(TimeSpan.FromMilliseconds(300));
        Assert.Multiple(() =>
        {
            Assert.That(delivered.Where(d => ReferenceEquals(d.Scope, scope)).Select(d => d.Path), Is.EqualTo(Enumerable.Repeat("direct", 10)),
                "this process's commits are sent from memory, not claimed from the table");
            Assert.That(listener.Count, Is.Zero, "rows leased to this relay need no NOTIFY: no other relay may claim them");
            var numbers = host.Received.InOrder.Select(r => r.Message.Number).ToList();
            for (var t = 0; t < 5; t++)
                Assert.That(numbers.Where(n => n / 2 == t), Is.EqualTo(new[] { t * 2, t * 2 + 1 }), $"transaction {t}'s messages in write order");
        });
    }

    [Test]
    public async Task When_writers_outrun_a_small_direct_queue_should_deliver_every_commit_once_and_in_order()
    {
        using var paths = new DeliveryPaths();
        // Room for one transaction: forty concurrent writers of two messages each keep it full.
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o =>
        {
            o.DirectDelivery = true;
            o.DirectDeliveryLimit = 1;
        });

        var writes = await Task.WhenAll(Enumerable.Range(0, 40).Select(t => host.WriteAsync(2, start: t * 2)));
        var ids = writes.SelectMany(w => w).ToList();

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey), 15), Is.True, "not delivered");
        Assert.Multiple(() =>
        {
            // Saves that find the queue full wait for room (bounded), then go direct or, after the wait, to the claims.
            Assert.That(paths.Seen.Count, Is.EqualTo(80), "each message delivered once, directly or through a claim");
            var numbers = host.Received.InOrder.Select(r => r.Message.Number).ToList();
            for (var t = 0; t < 40; t++)
                Assert.That(numbers.Where(n => n / 2 == t), Is.EqualTo(new[] { t * 2, t * 2 + 1 }), $"transaction {t}'s messages in write order");
        });
    }

    [Test]
    public async Task When_the_direct_queue_is_full_should_hold_the_next_save_until_there_is_room()
    {
        using var paths = new DeliveryPaths();
        // The relay's publishes of WidgetCreated wait at a gate: the first commit fills a direct queue of one and stays in it.
        var gate = new PublishGate<WidgetCreated>();
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o =>
        {
            o.DirectDelivery = true;
            o.DirectDeliveryLimit = 1;
        }, bus: cfg => cfg.ConfigurePublish(p => p.UseFilter(gate)));

        var first = await host.WriteAsync(1, start: 0);
        var second = host.WriteAsync(1, start: 1);
        await Task.Delay(TimeSpan.FromMilliseconds(200));
        var held = !second.IsCompleted;
        gate.Open();
        var ids = first.Concat(await second).ToList();

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey), 15), Is.True, "not delivered");
        Assert.Multiple(() =>
        {
            Assert.That(held, Is.True, "a save that finds the relay's direct queue full waits for room (up to a second)");
            Assert.That(paths.Seen, Is.EqualTo(new[] { "direct", "direct" }),
                "once the first commit is confirmed the held save goes direct too, not to the claims");
            Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(new[] { 0, 1 }));
        });
    }

    [Test]
    public async Task When_a_rollback_to_a_savepoint_drops_a_message_should_send_only_what_committed()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o => o.DirectDelivery = true);
        Guid kept, dropped;
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            var outbox = scope.ServiceProvider.GetRequiredService<IOutbox>();
            await using var transaction = await db.Database.BeginTransactionAsync();
            kept = outbox.Publish(new WidgetCreated(Guid.NewGuid(), "kept", 1));
            await db.SaveChangesAsync();
            await transaction.CreateSavepointAsync("before");
            dropped = outbox.Publish(new WidgetCreated(Guid.NewGuid(), "dropped", 2));
            await db.SaveChangesAsync();
            await transaction.RollbackToSavepointAsync("before");
            await transaction.CommitAsync();
        }

        var marker = await host.WriteAsync(1, start: 3);

        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(marker[0]) && host.Received.ByMessageId.ContainsKey(kept)), Is.True, "not delivered");
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.Multiple(async () =>
        {
            Assert.That(host.Received.ByMessageId.ContainsKey(dropped), Is.False, "a message rolled back to its savepoint reached the broker");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.EqualTo(2));
        });
    }

    [Test]
    public async Task When_a_relay_stops_before_its_direct_sends_went_out_should_leave_them_to_another_relay_at_once()
    {
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true);
        await using var proxy = TcpProxy.Start(_broker.Host, _broker.Port);
        List<Guid> ids;
        await using (var stopped = await OutboxHost.StartAsync(_broker, _database, brokerPort: proxy.Port, outbox: o => o.DirectDelivery = true))
        {
            var first = await stopped.WriteAsync(1);
            Assert.That(await Until(() => consumer.Received.ByMessageId.ContainsKey(first[0])), Is.True, "precondition: delivery through the proxy");
            // Its confirm and mark too: a cut before the confirm came back leaves that message leased (and resent later) as well.
            Assert.That(await Eventually.TrueAsync(async () => await stopped.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NOT NULL") == 1,
                TimeSpan.FromSeconds(20)), Is.True, "precondition: the first message marked delivered");
            proxy.Disconnect();
            ids = await stopped.WriteAsync(3, start: 1);
            await Task.Delay(TimeSpan.FromMilliseconds(500));
            Assert.That(await stopped.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL AND lock_token IS NOT NULL"),
                Is.EqualTo(3), "precondition: the commit is leased to the stopping relay, its sends waiting for the broker");
        }

        await using var other = await OutboxHost.StartAsync(_broker, _database);

        Assert.That(await Until(() => ids.All(consumer.Received.ByMessageId.ContainsKey), 30), Is.True,
            "released at the stop, the other relay must deliver them without waiting for the 60 s lease");
        Assert.That(consumer.Received.InOrder.Where(r => r.Message.Number > 0).Select(r => r.Message.Number), Is.EqualTo(new[] { 1, 2, 3 }));
    }

    [Test]
    public async Task When_the_DbContext_is_registered_after_the_outbox_should_still_wake_the_relay_at_the_commit()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, dbContextAfterOutbox: true);

        var stopwatch = Stopwatch.StartNew();
        var ids = await host.WriteAsync(1);

        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(ids[0]), 10), Is.True, "not delivered");
        Assert.That(stopwatch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(5)), "the poll is 30 s here: only the interceptor's wake-up can deliver this quickly");
    }

    [Test]
    public async Task When_the_tables_are_in_a_schema_should_write_deliver_deduplicate_and_clean_up_there()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, inbox: new CrashOnceAfterCommit(), schema: "shop", outbox: o =>
        {
            o.RetentionPeriod = TimeSpan.Zero;
            o.CleanupInterval = TimeSpan.FromMilliseconds(200);
            o.PollInterval = TimeSpan.FromMilliseconds(200);
        });

        var ids = await host.WriteAsync(3);
        var charge = Guid.NewGuid();
        var endpoint = await host.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri("queue:charges"));
        for (var i = 0; i < 2; i++)
            await endpoint.Send(new ChargeCard(Guid.NewGuid(), 5), Pipe.Execute<SendContext<ChargeCard>>(c => c.MessageId = charge));

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey) && host.Received.Total == 4), Is.True,
            () => $"received {host.Received.Total}: three widgets and one CardCharged expected");
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM shop.outbox_messages").Result == 0), Is.True,
            "the relay's cleanup must delete the delivered rows in the schema");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM shop.inbox_states"), Is.EqualTo(1), "the inbox writes in the schema");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM charges"), Is.EqualTo(1), "the duplicate was applied");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM information_schema.tables WHERE table_schema = 'public' AND table_name LIKE '%box%'"),
                Is.Zero, "no outbox table outside the schema");
        });
    }

    [Test]
    public async Task When_two_hosts_run_in_one_process_should_count_each_ones_deliveries_on_its_own_instruments()
    {
        var measured = new System.Collections.Concurrent.ConcurrentBag<(object? Scope, string Instrument, double Value)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == OutboxDiagnostics.Name)
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => measured.Add((instrument.Meter.Scope, instrument.Name, value)));
        listener.SetMeasurementEventCallback<double>((instrument, value, _, _) => measured.Add((instrument.Meter.Scope, instrument.Name, value)));
        listener.Start();
        await using var writer = await OutboxHost.StartAsync(_broker, _database, consume: true);
        await using var idle = await OutboxHost.StartAsync(_broker, _database, relay: false);
        var writerMeters = writer.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        var idleMeters = idle.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();

        var ids = await writer.WriteAsync(3);
        Assert.That(await Until(() => ids.All(writer.Received.ByMessageId.ContainsKey)), Is.True, "not delivered");
        // The relay counts after the broker's confirm, which may come after the consumer already had the message.
        await Until(() => measured.Count(m => m.Instrument == "integration.outbox.commit_to_send") >= 3, 5);
        listener.RecordObservableInstruments();

        Assert.Multiple(() =>
        {
            Assert.That(measured.Where(m => m.Instrument == "integration.outbox.delivered" && ReferenceEquals(m.Scope, writerMeters)).Sum(m => m.Value),
                Is.EqualTo(3), "the delivering host's counter");
            Assert.That(measured.Where(m => m.Instrument == "integration.outbox.commit_to_send" && ReferenceEquals(m.Scope, writerMeters)).Count(),
                Is.EqualTo(3), "the delivering host's histogram");
            Assert.That(measured.Where(m => ReferenceEquals(m.Scope, idleMeters) && m.Instrument != "integration.outbox.undelivered"
                && m.Instrument != "integration.outbox.oldest_undelivered_age"), Is.Empty, "the other host delivered nothing and counted nothing");
            Assert.That(measured.Where(m => m.Instrument == "integration.outbox.undelivered").Select(m => m.Scope).Distinct().Count(),
                Is.EqualTo(2), "each host has its own backlog gauge");
        });
    }

    [Test]
    public async Task When_the_transaction_rolls_back_should_deliver_nothing()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true);

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            var outbox = scope.ServiceProvider.GetRequiredService<IOutbox>();
            await using var transaction = await db.Database.BeginTransactionAsync();
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "rolled back" });
            outbox.Publish(new WidgetCreated(Guid.NewGuid(), "rolled back", -1));
            await db.SaveChangesAsync();
            await transaction.RollbackAsync();
        }

        var marker = await host.WriteAsync(1, start: 1);

        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(marker[0])), Is.True);
        Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(new[] { 1 }), "the rolled-back message reached the broker");
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(1));
    }

    [Test]
    public async Task When_an_injected_publish_endpoint_is_used_outside_a_consumer_should_deliver_only_what_committed()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, busOutbox: true);
        var committed = Guid.NewGuid();
        var sent = Guid.NewGuid();
        var abandoned = Guid.NewGuid();

        await using (var scope = host.Services.CreateAsyncScope())
        {
            // What an HTTP handler does: business data and IPublishEndpoint/ISendEndpointProvider, one SaveChanges.
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "published" });
            await scope.ServiceProvider.GetRequiredService<MassTransit.IPublishEndpoint>()
                .Publish(new WidgetCreated(Guid.NewGuid(), "published", 1), c => c.MessageId = committed);
            var endpoint = await scope.ServiceProvider.GetRequiredService<MassTransit.ISendEndpointProvider>().GetSendEndpoint(new Uri("queue:widgets"));
            await endpoint.Send(new WidgetCreated(Guid.NewGuid(), "sent", 2), c => c.MessageId = sent);
            await Task.Delay(TimeSpan.FromMilliseconds(500));
            Assert.That(host.Received.Total, Is.Zero, "a message left before the commit");
            await db.SaveChangesAsync();
        }

        await using (var scope = host.Services.CreateAsyncScope())
        {
            scope.ServiceProvider.GetRequiredService<ShopDbContext>().Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "abandoned" });
            await scope.ServiceProvider.GetRequiredService<MassTransit.IPublishEndpoint>()
                .Publish(new WidgetCreated(Guid.NewGuid(), "abandoned", 3), c => c.MessageId = abandoned);
        }

        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(committed) && host.Received.ByMessageId.ContainsKey(sent)), Is.True,
            "the committed publish and send were not delivered with their MessageIds");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE destination IS NULL"), Is.EqualTo(1), "the publish must be stored as a publish");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE destination LIKE '%widgets%'"), Is.EqualTo(1), "the send keeps its destination");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(1));
        });
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        Assert.That(host.Received.ByMessageId.ContainsKey(abandoned), Is.False, "a message of a scope that never saved reached the broker");
        Assert.That(host.Received.Total, Is.EqualTo(2));
    }

    [Test]
    public async Task When_a_publish_sets_headers_and_envelope_fields_should_deliver_them_from_the_outbox()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, busOutbox: true);
        var messageId = Guid.NewGuid();
        var conversation = Guid.NewGuid();
        var initiator = Guid.NewGuid();
        var request = Guid.NewGuid();

        await using (var scope = host.Services.CreateAsyncScope())
        {
            await scope.ServiceProvider.GetRequiredService<IPublishEndpoint>().Publish(new WidgetCreated(Guid.NewGuid(), "with headers", 1), c =>
            {
                c.MessageId = messageId;
                c.ConversationId = conversation;
                c.InitiatorId = initiator;
                c.RequestId = request;
                c.ResponseAddress = new Uri("queue:widget-replies");
                c.FaultAddress = new Uri("queue:widget-faults");
                c.TimeToLive = TimeSpan.FromMinutes(5);
                c.Headers.Set("tenant", "north");
                c.Headers.Set("attempt", 3);
                c.Headers.Set("urgent", true);
            });
            await scope.ServiceProvider.GetRequiredService<ShopDbContext>().SaveChangesAsync();
        }

        Assert.That(await Until(() => host.Received.Contexts.ContainsKey(messageId)), Is.True, "not delivered");
        var consumed = host.Received.Contexts[messageId];
        Assert.Multiple(() =>
        {
            Assert.That(consumed.Headers.Get<string>("tenant"), Is.EqualTo("north"), "a custom string header");
            Assert.That(consumed.Headers.Get<int>("attempt"), Is.EqualTo(3), "a custom number header");
            Assert.That(consumed.Headers.Get<bool>("urgent"), Is.True, "a custom boolean header");
            Assert.That(consumed.ConversationId, Is.EqualTo(conversation), "the conversation");
            Assert.That(consumed.InitiatorId, Is.EqualTo(initiator), "the initiator (causation)");
            Assert.That(consumed.RequestId, Is.EqualTo(request));
            Assert.That(consumed.ResponseAddress?.AbsolutePath, Does.EndWith("widget-replies"));
            Assert.That(consumed.FaultAddress?.AbsolutePath, Does.EndWith("widget-faults"));
            Assert.That(consumed.ExpirationTime, Is.Not.Null, "the time-to-live");
        });
    }

    [Test]
    public async Task When_a_message_is_written_inside_a_trace_should_be_consumed_in_that_trace()
    {
        using var listener = new ActivityListener
        {
            ShouldListenTo = _ => true,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        using var requests = new ActivitySource("Integration.Outbox.Tests.Requests");
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true);

        string traceId;
        List<Guid> ids;
        using (var request = requests.StartActivity("POST /api/widgets", ActivityKind.Server))
        {
            traceId = request!.TraceId.ToString();
            ids = await host.WriteAsync(1);
        }

        Assert.That(await Until(() => host.Received.TraceIds.ContainsKey(ids[0])), Is.True, "not consumed");
        Assert.That(host.Received.TraceIds[ids[0]], Is.EqualTo(traceId),
            "the consumer must run in the trace of the request that committed the message, across the outbox and the broker");
    }

    sealed class CommandRecorder : Microsoft.EntityFrameworkCore.Diagnostics.DbCommandInterceptor
    {
        public List<string> Commands { get; } = [];

        public override ValueTask<System.Data.Common.DbDataReader> ReaderExecutedAsync(System.Data.Common.DbCommand command,
            Microsoft.EntityFrameworkCore.Diagnostics.CommandExecutedEventData eventData, System.Data.Common.DbDataReader result, CancellationToken cancellationToken = default)
        {
            Commands.Add(command.CommandText);
            return base.ReaderExecutedAsync(command, eventData, result, cancellationToken);
        }

        public override ValueTask<int> NonQueryExecutedAsync(System.Data.Common.DbCommand command,
            Microsoft.EntityFrameworkCore.Diagnostics.CommandExecutedEventData eventData, int result, CancellationToken cancellationToken = default)
        {
            Commands.Add(command.CommandText);
            return base.NonQueryExecutedAsync(command, eventData, result, cancellationToken);
        }
    }

    [Test]
    public async Task When_a_writer_saves_rows_and_messages_outside_a_transaction_should_commit_them_in_one_command()
    {
        var commands = new CommandCounter();
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, interceptor: commands);
        await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets");
        commands.Reset();

        var ids = await host.WriteAsync(3);

        Assert.Multiple(() =>
        {
            // Three widgets and their three outbox rows: EF Core's one batched command, committed by PostgreSQL's implicit
            // transaction of that command, instead of BEGIN + batch and a COMMIT round trip.
            Assert.That(commands.Inserts, Is.EqualTo(1), "the business rows and the outbox rows should go in one command");
            Assert.That(commands.Transactions, Is.Zero, "a save that is one command needs no explicit transaction");
        });
        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey)), Is.True, "not delivered");
        Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(new[] { 0, 1, 2 }), "one save is one unit of order");
    }

    [Test]
    public async Task When_a_one_command_save_fails_on_its_last_row_should_keep_neither_the_rows_nor_the_messages()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true);
        var taken = Guid.NewGuid();
        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            db.Widgets.Add(new Widget { Id = taken, Name = "first" });
            await db.SaveChangesAsync();
        }

        await using (var scope = host.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
            var outbox = scope.ServiceProvider.GetRequiredService<IOutbox>();
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "kept only if all commit" });
            outbox.Publish(new WidgetCreated(Guid.NewGuid(), "never", -1));
            db.Widgets.Add(new Widget { Id = taken, Name = "duplicate key" });
            Assert.That(async () => await db.SaveChangesAsync(), Throws.InstanceOf<DbUpdateException>());
        }

        var marker = await host.WriteAsync(1, start: 1);
        Assert.That(await Until(() => host.Received.ByMessageId.ContainsKey(marker[0])), Is.True);
        Assert.Multiple(async () =>
        {
            Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(new[] { 1 }), "the failed save's message reached the broker");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(2), "the failed save's first widget was kept");
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages"), Is.EqualTo(1));
        });
    }

    [Test]
    public async Task When_a_save_writes_outbox_messages_should_wake_relays_only_after_the_commit_and_never_inside_it()
    {
        var recorder = new CommandRecorder();
        await using var interceptor = new OutboxNotifyInterceptor();
        var local = 0;
        interceptor.Committed += () => Interlocked.Increment(ref local);
        var options = new DbContextOptionsBuilder<ShopDbContext>().UseNpgsql(_database.ConnectionString)
            .AddInterceptors(interceptor, recorder).Options;
        await using var db = new ShopDbContext(options);
        await db.Database.EnsureCreatedAsync();
        await using var listener = await OutboxListener.StartAsync(_database.ConnectionString);
        recorder.Commands.Clear();

        // The caller's transaction, rolled back: no wake-up at all.
        await using (var transaction = await db.Database.BeginTransactionAsync())
        {
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "rolled back" });
            new EntityFrameworkOutbox(db, TimeProvider.System).Publish(new WidgetCreated(Guid.NewGuid(), "rolled back", 0));
            await db.SaveChangesAsync();
            await transaction.RollbackAsync();
        }

        db.ChangeTracker.Clear();
        await listener.WaitAsync(TimeSpan.FromMilliseconds(300));
        Assert.That((listener.Count, Volatile.Read(ref local)), Is.EqualTo((0, 0)), "a rolled-back save woke a relay");

        // The caller's transaction, committed: the wake-up waits for the commit.
        await using (var transaction = await db.Database.BeginTransactionAsync())
        {
            db.Widgets.Add(new Widget { Id = Guid.NewGuid(), Name = "w" });
            new EntityFrameworkOutbox(db, TimeProvider.System).Publish(new WidgetCreated(Guid.NewGuid(), "w", 1));
            await db.SaveChangesAsync();
            await listener.WaitAsync(TimeSpan.FromMilliseconds(300));
            Assert.That((listener.Count, Volatile.Read(ref local)), Is.EqualTo((0, 0)), "the wake-up must wait for the commit");
            await transaction.CommitAsync();
        }

        Assert.That(await listener.WaitAsync(TimeSpan.FromSeconds(5)), Is.True, "no NOTIFY after the commit");
        Assert.That(Volatile.Read(ref local), Is.EqualTo(1), "relays in this process are woken directly");

        // EF Core's own transaction: woken once it committed.
        new EntityFrameworkOutbox(db, TimeProvider.System).Publish(new WidgetCreated(Guid.NewGuid(), "w", 2));
        await db.SaveChangesAsync();
        Assert.That(await listener.WaitAsync(TimeSpan.FromSeconds(5)), Is.True, "no NOTIFY after an implicit transaction");
        Assert.That(Volatile.Read(ref local), Is.EqualTo(2));

        // PostgreSQL serializes the commits of transactions that NOTIFY: the writers' own statements must not.
        Assert.That(recorder.Commands.Where(c => c.Contains("pg_notify", StringComparison.Ordinal)), Is.Empty);
    }

    [Test]
    public async Task When_many_transactions_commit_at_once_should_coalesce_their_notifications()
    {
        await using var interceptor = new OutboxNotifyInterceptor();
        var options = new DbContextOptionsBuilder<ShopDbContext>().UseNpgsql(_database.ConnectionString).AddInterceptors(interceptor).Options;
        await using (var db = new ShopDbContext(options))
            await db.Database.EnsureCreatedAsync();
        await using var listener = await OutboxListener.StartAsync(_database.ConnectionString);

        await Parallel.ForEachAsync(Enumerable.Range(0, 200), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
        {
            await using var db = new ShopDbContext(options);
            new EntityFrameworkOutbox(db, TimeProvider.System).Publish(new WidgetCreated(Guid.NewGuid(), "w", i));
            await db.SaveChangesAsync();
        });
        while (await listener.WaitAsync(TimeSpan.FromMilliseconds(500)))
        {
        }

        TestContext.Out.WriteLine($"200 commits, {listener.Count} NOTIFYs");
        Assert.That(listener.Count, Is.GreaterThan(0).And.LessThan(200), "at least one NOTIFY after the last commit; concurrent commits share one");
    }

    [Test]
    public async Task When_no_relay_ran_at_commit_should_deliver_everything_once_a_relay_starts()
    {
        // The subscriber exists first: a publish that no queue is bound to is dropped by the broker, outbox or not.
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true);
        List<Guid> ids;
        await using (var crashed = await OutboxHost.StartAsync(_broker, _database, relay: false))
            ids = await crashed.WriteAsync(25);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.That(consumer.Received.Total, Is.Zero, "precondition: nothing delivered without a relay");

        await using var restarted = await OutboxHost.StartAsync(_broker, _database);

        Assert.That(await Until(() => ids.All(consumer.Received.ByMessageId.ContainsKey)), Is.True,
            () => $"delivered {consumer.Received.ByMessageId.Count} of {ids.Count}");
    }

    [Test]
    public async Task When_one_transaction_writes_several_messages_should_deliver_them_in_order()
    {
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true);
        await using var relay = await OutboxHost.StartAsync(_broker, _database);

        await relay.WriteAsync(50);

        Assert.That(await Until(() => consumer.Received.Total == 50), Is.True);
        Assert.That(consumer.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(Enumerable.Range(0, 50)), "order within one transaction");
    }

    [Test]
    public async Task When_two_relays_claim_batches_smaller_than_the_transactions_should_keep_each_transactions_order()
    {
        // 30 transactions of 20 messages, claimed 7 at a time by two competing relays: every batch cuts a transaction,
        // and the rest of it must not go out (from either relay) before its first part is confirmed.
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true);
        var ids = new List<Guid>();
        await using (var writer = await OutboxHost.StartAsync(_broker, _database, relay: false))
        {
            for (var t = 0; t < 30; t++)
                ids.AddRange(await writer.WriteAsync(20, start: t * 20));
        }

        await using var relayA = await OutboxHost.StartAsync(_broker, _database, outbox: o => o.BatchSize = 7);
        await using var relayB = await OutboxHost.StartAsync(_broker, _database, outbox: o => o.BatchSize = 7);

        Assert.That(await Until(() => consumer.Received.ByMessageId.Count == ids.Count, 60), Is.True,
            () => $"delivered {consumer.Received.ByMessageId.Count} of {ids.Count}");
        var numbers = consumer.Received.InOrder.Select(r => r.Message.Number).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(consumer.Received.ByMessageId.Values.Where(n => n > 1), Is.Empty, "no message delivered twice");
            for (var t = 0; t < 30; t++)
                Assert.That(numbers.Where(n => n / 20 == t), Is.EqualTo(Enumerable.Range(t * 20, 20)), $"order within transaction {t}");
        });
    }

    [Test]
    public async Task When_two_relays_share_the_database_should_deliver_each_of_10000_messages_exactly_once()
    {
        var received = new Received();
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true, received: received);
        var ids = new List<Guid>();
        await using (var writer = await OutboxHost.StartAsync(_broker, _database, relay: false))
        {
            for (var t = 0; t < 500; t++)
                ids.AddRange(await writer.WriteAsync(20, start: t * 20));
        }

        var stopwatch = Stopwatch.StartNew();
        await using var relayA = await OutboxHost.StartAsync(_broker, _database, outbox: o => o.BatchSize = 50);
        await using var relayB = await OutboxHost.StartAsync(_broker, _database, outbox: o => o.BatchSize = 50);

        Assert.That(await Until(() => received.ByMessageId.Count == ids.Count, 120), Is.True,
            () => $"delivered {received.ByMessageId.Count} of {ids.Count}");
        var elapsed = stopwatch.Elapsed;
        await Until(() => consumer.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL").Result == 0, 30);
        TestContext.Out.WriteLine($"two relays delivered {ids.Count} messages in {elapsed.TotalSeconds:0.0} s ({ids.Count / elapsed.TotalSeconds:0} msg/s)");
        Assert.Multiple(() =>
        {
            Assert.That(received.ByMessageId.Keys, Is.EquivalentTo(ids), "every message, and only those");
            Assert.That(received.ByMessageId.Values.Where(n => n > 1), Is.Empty, "no message delivered twice");
        });
    }

    [TestCase(false, TestName = "When_the_broker_is_down_for_10_seconds_should_deliver_everything_once_it_is_back")]
    [TestCase(true, TestName = "When_the_broker_is_down_for_10_seconds_with_direct_delivery_should_deliver_everything_once_it_is_back")]
    public async Task When_the_broker_is_down_for_10_seconds_should_deliver_everything_once_it_is_back(bool direct)
    {
        await using var consumer = await OutboxHost.StartAsync(_broker, _database, relay: false, consume: true);
        await using var proxy = TcpProxy.Start(_broker.Host, _broker.Port);
        await using var relay = await OutboxHost.StartAsync(_broker, _database, brokerPort: proxy.Port, outbox: o =>
        {
            o.SendTimeout = TimeSpan.FromSeconds(5);
            o.DirectDelivery = direct;
        });
        var first = await relay.WriteAsync(1);
        Assert.That(await Until(() => consumer.Received.ByMessageId.ContainsKey(first[0])), Is.True, "precondition: delivery through the proxy");

        proxy.Disconnect();
        var ids = new List<Guid>();
        for (var i = 0; i < 20; i++)
            ids.AddRange(await relay.WriteAsync(5, start: 100 + i * 5));
        await Task.Delay(TimeSpan.FromSeconds(10));
        Assert.That(await relay.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages WHERE delivered_at IS NULL"), Is.GreaterThan(0),
            "with the broker down the messages wait in the outbox");
        proxy.Reconnect();

        Assert.That(await Until(() => ids.All(consumer.Received.ByMessageId.ContainsKey), 90), Is.True,
            () => $"delivered {ids.Count(consumer.Received.ByMessageId.ContainsKey)} of {ids.Count} after the broker came back");
    }

    [Test]
    public async Task When_delivered_messages_are_past_retention_should_delete_them()
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o =>
        {
            o.RetentionPeriod = TimeSpan.Zero;
            o.CleanupInterval = TimeSpan.FromMilliseconds(200);
            o.PollInterval = TimeSpan.FromMilliseconds(200);
        });

        var ids = await host.WriteAsync(10);

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey)), Is.True);
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages").Result == 0), Is.True, "delivered rows were not cleaned up");
        Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(10), "cleanup must touch only the outbox");
    }

    [TestCase(false)]
    [TestCase(true)]
    public async Task When_the_retention_is_zero_should_delete_each_message_as_it_is_marked_delivered(bool directDelivery)
    {
        await using var host = await OutboxHost.StartAsync(_broker, _database, consume: true, outbox: o =>
        {
            o.RetentionPeriod = TimeSpan.Zero;
            o.CleanupInterval = TimeSpan.FromHours(1);   // the cleanup's first round runs at the start; none after it here
            o.DirectDelivery = directDelivery;
        });
        await Task.Delay(TimeSpan.FromMilliseconds(300));

        var ids = await host.WriteAsync(10);

        Assert.That(await Until(() => ids.All(host.Received.ByMessageId.ContainsKey)), Is.True, "not delivered");
        Assert.That(await Until(() => host.CountAsync("SELECT count(*) AS \"Value\" FROM outbox_messages").Result == 0), Is.True,
            "with no retention the mark deletes the delivered rows; the cleanup does not run again for an hour");
        Assert.Multiple(async () =>
        {
            Assert.That(await host.CountAsync("SELECT count(*) AS \"Value\" FROM widgets"), Is.EqualTo(10), "only the outbox rows go");
            Assert.That(host.Received.Total, Is.EqualTo(10), "each message once");
            Assert.That(host.Received.InOrder.Select(r => r.Message.Number), Is.EqualTo(Enumerable.Range(0, 10)), "in write order");
        });
    }
}

/// <summary>A connection listening on the outbox channel, counting the notifications it received.</summary>
sealed class OutboxListener : IAsyncDisposable
{
    readonly Npgsql.NpgsqlConnection _connection;
    int _count;

    OutboxListener(Npgsql.NpgsqlConnection connection)
    {
        _connection = connection;
        _connection.Notification += (_, _) => Interlocked.Increment(ref _count);
    }

    /// <summary>Notifications received so far.</summary>
    public int Count => Volatile.Read(ref _count);

    public static async Task<OutboxListener> StartAsync(string connectionString)
    {
        var listener = new OutboxListener(new Npgsql.NpgsqlConnection(connectionString));
        await listener._connection.OpenAsync();
        await using (var listen = new Npgsql.NpgsqlCommand($"LISTEN {OutboxNotifyInterceptor.Channel}", listener._connection))
            await listen.ExecuteNonQueryAsync();
        return listener;
    }

    /// <summary>Waits for a notification; false when none came within <paramref name="timeout"/>.</summary>
    public Task<bool> WaitAsync(TimeSpan timeout) => _connection.WaitAsync(timeout);

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}

/// <summary>The path (<c>direct</c> or the claim's) of every delivery counted on <c>integration.outbox.delivered</c>, in order.</summary>
sealed class DeliveryPaths : IDisposable
{
    readonly System.Diagnostics.Metrics.MeterListener _meters = new();

    public DeliveryPaths()
    {
        _meters.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == OutboxDiagnostics.Name && instrument.Name == "integration.outbox.delivered")
                l.EnableMeasurementEvents(instrument);
        };
        _meters.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "integration.outbox.delivery")
                    Seen.Enqueue(tag.Value as string);
            }
        });
        _meters.Start();
    }

    public System.Collections.Concurrent.ConcurrentQueue<string?> Seen { get; } = new();

    public void Dispose() => _meters.Dispose();
}

/// <summary>Holds the publishes of <typeparamref name="T"/> until <see cref="Open"/>; every other message passes.</summary>
sealed class PublishGate<T> : IFilter<PublishContext>
    where T : class
{
    readonly TaskCompletionSource _open = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Open() => _open.TrySetResult();

    public async Task Send(PublishContext context, IPipe<PublishContext> next)
    {
        if (context is PublishContext<T>)
            await _open.Task;
        await next.Send(context);
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("publish-gate");
}
