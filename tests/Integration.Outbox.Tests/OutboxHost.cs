using System.Collections.Concurrent;
using Integration.Outbox;
using Integration.Outbox.Model;
using Integration.Outbox.Inbox;
using Integration.Outbox.Writing;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Outbox.Tests;

public sealed class Widget
{
    public Guid Id { get; set; }
    public string Name { get; set; } = "";
}

public sealed record WidgetCreated(Guid WidgetId, string Name, int Number);

/// <summary>A row written under optimistic concurrency: <see cref="Quantity"/> is its concurrency token.</summary>
public sealed class Stock
{
    public Guid Id { get; set; }
    public int Quantity { get; set; }
}

public sealed class Charge
{
    public Guid Id { get; set; }
    public Guid CardId { get; set; }
    public int Amount { get; set; }
}

public sealed record ChargeCard(Guid CardId, int Amount);

public sealed record CardCharged(Guid ChargeId, Guid CardId, int Amount);

/// <summary>The effect under test: one row per charge, and a CardCharged through the outbox, in the inbox's transaction.</summary>
public sealed class ChargeCardConsumer(ShopDbContext db, IOutbox outbox) : IConsumer<ChargeCard>
{
    /// <summary>An amount that makes the consumer write a row through raw SQL before it fails.</summary>
    public const int RawWriteThenFail = -1;

    public async Task Consume(ConsumeContext<ChargeCard> context)
    {
        var charge = new Charge { Id = Guid.NewGuid(), CardId = context.Message.CardId, Amount = context.Message.Amount };
        if (context.Message.Amount == RawWriteThenFail)
        {
            await db.Database.ExecuteSqlRawAsync("INSERT INTO charges (\"Id\", \"CardId\", \"Amount\") VALUES ({0}, {1}, {2})",
                [charge.Id, charge.CardId, charge.Amount], context.CancellationToken);
        }
        else
        {
            db.Charges.Add(charge);
        }

        outbox.Publish(new CardCharged(charge.Id, charge.CardId, charge.Amount));
        if (context.Message.Amount < 0)
            throw new InvalidOperationException("negative charge");
    }
}

public sealed class CardChargedConsumer(Received received) : IConsumer<CardCharged>
{
    public Task Consume(ConsumeContext<CardCharged> context)
    {
        received.ByMessageId.AddOrUpdate(context.MessageId!.Value, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }
}

/// <summary>Simulates a crash after the inbox committed and before the broker ack: throws once after the rest of the pipe ran.</summary>
public sealed class CrashOnceAfterCommit : IFilter<ConsumeContext>
{
    int _crashed;
    int _deliveries;

    public bool Enabled { get; set; }

    public bool Crashed => Volatile.Read(ref _crashed) == 1;

    public int Deliveries => Volatile.Read(ref _deliveries);

    public async Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
    {
        Interlocked.Increment(ref _deliveries);
        await next.Send(context);
        if (Enabled && Interlocked.Exchange(ref _crashed, 1) == 0)
            throw new IOException("simulated crash after commit, before ack");
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("crash-once");
}

/// <summary>Where a test puts the outbox tables (null: the default schema).</summary>
public sealed record OutboxSchema(string? Name);

/// <summary>A user's own DbContext: business data plus the outbox tables (in <see cref="OutboxSchema"/> when one is registered).</summary>
public sealed class ShopDbContext(DbContextOptions<ShopDbContext> options, OutboxSchema? schema = null) : DbContext(options)
{
    public DbSet<Widget> Widgets => Set<Widget>();

    public DbSet<Charge> Charges => Set<Charge>();

    public DbSet<Stock> Stock => Set<Stock>();

    public string? Schema { get; } = schema?.Name;

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Widget>().ToTable("widgets");
        modelBuilder.Entity<Charge>().ToTable("charges");
        modelBuilder.Entity<Stock>(e =>
        {
            e.ToTable("stock");
            e.Property(x => x.Quantity).IsConcurrencyToken();
        });
        modelBuilder.AddIntegrationOutbox(Schema);
    }
}

/// <summary>One model per schema (EF Core caches one model per DbContext type otherwise).</summary>
public sealed class SchemaModelCacheKeyFactory : Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory
{
    public object Create(DbContext context, bool designTime) => (context.GetType(), (context as ShopDbContext)?.Schema, designTime);
}

/// <summary>What consumers received, by MessageId.</summary>
public sealed class Received
{
    public ConcurrentDictionary<Guid, int> ByMessageId { get; } = new();
    public ConcurrentDictionary<Guid, string> TraceIds { get; } = new();
    public ConcurrentDictionary<Guid, ConsumeContext<WidgetCreated>> Contexts { get; } = new();
    public ConcurrentQueue<(Guid MessageId, WidgetCreated Message, DateTimeOffset At)> InOrder { get; } = new();
    public int Total => ByMessageId.Values.Sum();
}

public sealed class WidgetCreatedConsumer(Received received) : IConsumer<WidgetCreated>
{
    public Task Consume(ConsumeContext<WidgetCreated> context)
    {
        received.ByMessageId.AddOrUpdate(context.MessageId!.Value, 1, (_, n) => n + 1);
        if (System.Diagnostics.Activity.Current is { } activity)
            received.TraceIds[context.MessageId!.Value] = activity.TraceId.ToString();
        received.InOrder.Enqueue((context.MessageId!.Value, context.Message, DateTimeOffset.UtcNow));
        received.Contexts[context.MessageId!.Value] = context;
        return Task.CompletedTask;
    }
}

/// <summary>A host with the outbox (and optionally its relay and a consumer) on a test's own database and vhost, built on the kit's <see cref="IntegrationServiceHost"/>.</summary>
public sealed class OutboxHost : IAsyncDisposable
{
    readonly IntegrationServiceHost _host;

    OutboxHost(IntegrationServiceHost host) => _host = host;

    public IServiceProvider Services => _host.Services;

    /// <summary>The kit's host: outbox harness, broker, database.</summary>
    public IntegrationServiceHost Host => _host;

    public Received Received => _host.Services.GetRequiredService<Received>();

    public static async Task<OutboxHost> StartAsync(TestBroker broker, TestDatabase database, bool relay = true, bool consume = false,
        Action<OutboxOptions>? outbox = null, int? brokerPort = null, Received? received = null, CrashOnceAfterCommit? inbox = null,
        bool busOutbox = false, string? schema = null, bool dbContextAfterOutbox = false,
        Microsoft.EntityFrameworkCore.Diagnostics.IInterceptor? interceptor = null, Action<IRabbitMqBusFactoryConfigurator>? bus = null)
    {
        var host = await IntegrationServiceHost.StartAsync(h =>
        {
            h.Services.AddSingleton(received ?? new Received());
            h.Services.AddSingleton(new OutboxSchema(schema));
            // No interceptor here: AddIntegrationOutbox wires it into ShopDbContext's options, registered before or after it.
            void AddDbContext() => h.Services.AddDbContext<ShopDbContext>(o =>
            {
                o.UseNpgsql(database.ConnectionString)
                    .ReplaceService<Microsoft.EntityFrameworkCore.Infrastructure.IModelCacheKeyFactory, SchemaModelCacheKeyFactory>();
                if (interceptor is not null)
                    o.AddInterceptors(interceptor);
            });
            if (!dbContextAfterOutbox)
                AddDbContext();
            h.Services.AddIntegrationOutbox<ShopDbContext>(o =>
            {
                o.RunRelay = relay;
                o.PollInterval = TimeSpan.FromSeconds(30);
                outbox?.Invoke(o);
            });
            if (dbContextAfterOutbox)
                AddDbContext();
            h.Services.AddMassTransit(x =>
            {
                if (busOutbox)
                    x.AddIntegrationBusOutbox();
                if (consume)
                    x.AddConsumer<WidgetCreatedConsumer>().Endpoint(e =>
                    {
                        // One at a time: the order received is the order the broker delivered (what the ordering spec checks).
                        e.Name = "widgets";
                        e.PrefetchCount = 1;
                        e.ConcurrentMessageLimit = 1;
                    });
                if (inbox is not null)
                {
                    x.AddConsumer<ChargeCardConsumer>().ExcludeFromConfigureEndpoints();
                    x.AddConsumer<CardChargedConsumer>().Endpoint(e => e.Name = "card-charged");
                }
                x.UsingRabbitMq((context, cfg) =>
                {
                    // Through a fault proxy when the spec cuts the connection, else straight to the test's vhost.
                    cfg.Host(brokerPort is null ? broker.Host : "127.0.0.1", (ushort)(brokerPort ?? broker.Port), broker.VirtualHost, c =>
                    {
                        c.Username(broker.Username);
                        c.Password(broker.Password);
                        c.Heartbeat(TimeSpan.FromSeconds(2));
                        c.RequestedConnectionTimeout(TimeSpan.FromSeconds(3));
                    });
                    if (inbox is not null)
                    {
                        cfg.ReceiveEndpoint("charges", e =>
                        {
                            e.UseMessageRetry(r => r.Immediate(2));
                            e.UseFilter(inbox);
                            e.UseIntegrationInbox(context);
                            e.ConfigureConsumer<ChargeCardConsumer>(context);
                        });
                    }

                    bus?.Invoke(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            });
        }, o =>
        {
            o.Broker = broker;
            o.Database = database;
        });
        return new OutboxHost(host);
    }

    /// <summary>Writes <paramref name="count"/> widgets, each with its WidgetCreated, in one transaction; returns the MessageIds.</summary>
    public async Task<List<Guid>> WriteAsync(int count, int start = 0)
    {
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        var outbox = scope.ServiceProvider.GetRequiredService<Writing.IOutbox>();
        var ids = new List<Guid>();
        for (var i = 0; i < count; i++)
        {
            var widget = new Widget { Id = Guid.NewGuid(), Name = $"w{start + i}" };
            db.Widgets.Add(widget);
            ids.Add(outbox.Publish(new WidgetCreated(widget.Id, widget.Name, start + i)));
        }

        await db.SaveChangesAsync();
        return ids;
    }

    public async Task<long> CountAsync(string sql)
    {
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        return await db.Database.SqlQueryRaw<long>(sql).SingleAsync();
    }

    public ValueTask DisposeAsync() => _host.DisposeAsync();
}
