using System.Collections.Concurrent;
using Integration.Outbox;
using Integration.Outbox.Model;
using Integration.Outbox.Writing;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Outbox.Tests;

public sealed class Widget
{
    public Guid Id { get; set; }
    public string Name { get; set; } = "";
}

public sealed record WidgetCreated(Guid WidgetId, string Name, int Number);

/// <summary>A user's own DbContext: business data plus the outbox tables.</summary>
public sealed class ShopDbContext(DbContextOptions<ShopDbContext> options) : DbContext(options)
{
    public DbSet<Widget> Widgets => Set<Widget>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Widget>().ToTable("widgets");
        modelBuilder.AddIntegrationOutbox();
    }
}

/// <summary>What consumers received, by MessageId.</summary>
public sealed class Received
{
    public ConcurrentDictionary<Guid, int> ByMessageId { get; } = new();
    public ConcurrentQueue<(Guid MessageId, WidgetCreated Message, DateTimeOffset At)> InOrder { get; } = new();
    public int Total => ByMessageId.Values.Sum();
}

public sealed class WidgetCreatedConsumer(Received received) : IConsumer<WidgetCreated>
{
    public Task Consume(ConsumeContext<WidgetCreated> context)
    {
        received.ByMessageId.AddOrUpdate(context.MessageId!.Value, 1, (_, n) => n + 1);
        received.InOrder.Enqueue((context.MessageId!.Value, context.Message, DateTimeOffset.UtcNow));
        return Task.CompletedTask;
    }
}

/// <summary>A process with the outbox (and optionally its relay and a consumer) on a test's own database and vhost.</summary>
public sealed class OutboxHost : IAsyncDisposable
{
    readonly IHost _host;

    OutboxHost(IHost host) => _host = host;

    public IServiceProvider Services => _host.Services;

    public Received Received => _host.Services.GetRequiredService<Received>();

    public static async Task<OutboxHost> StartAsync(TestBroker broker, TestDatabase database, bool relay = true, bool consume = false,
        Action<OutboxOptions>? outbox = null, int? brokerPort = null, Received? received = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(received ?? new Received());
        builder.Services.AddDbContext<ShopDbContext>((sp, o) => o.UseNpgsql(database.ConnectionString)
            .AddInterceptors(sp.GetRequiredService<OutboxNotifyInterceptor>()));
        builder.Services.AddIntegrationOutbox<ShopDbContext>(o =>
        {
            o.RunRelay = relay;
            o.PollInterval = TimeSpan.FromSeconds(30);
            outbox?.Invoke(o);
        });
        builder.Services.AddMassTransit(x =>
        {
            if (consume)
                x.AddConsumer<WidgetCreatedConsumer>().Endpoint(e => e.Name = "widgets");
            x.UsingRabbitMq((context, cfg) =>
            {
                cfg.Host(brokerPort is null ? broker.Host : "127.0.0.1", (ushort)(brokerPort ?? broker.Port), broker.VirtualHost, h =>
                {
                    h.Username(broker.Username);
                    h.Password(broker.Password);
                    h.Heartbeat(TimeSpan.FromSeconds(2));
                    h.RequestedConnectionTimeout(TimeSpan.FromSeconds(3));
                });
                cfg.ConfigureEndpoints(context);
            });
        });
        var host = builder.Build();
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<ShopDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
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

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
