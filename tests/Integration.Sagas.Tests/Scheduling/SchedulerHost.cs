using System.Collections.Concurrent;
using Integration.Sagas.Scheduling;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Sagas.Tests.Scheduling;

public sealed record Reminder(Guid ReminderId, string Text);

public sealed record FlakyWork(Guid WorkId);

public sealed class QuartzDbContext(DbContextOptions<QuartzDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationScheduler();
}

/// <summary>
/// A bus with the durable scheduler on a test's vhost and database (the kit's <see cref="IntegrationServiceHost"/>); several
/// can run one after another or side by side on the same pair.
/// </summary>
public sealed class SchedulerHost : IAsyncDisposable
{
    IntegrationServiceHost _host = null!;
    AsyncServiceScope _scope;

    public ConcurrentQueue<ConsumeContext<Reminder>> Reminders { get; } = new();
    public ConcurrentQueue<ConsumeContext<FlakyWork>> FlakyAttempts { get; } = new();
    public ConcurrentQueue<TimeoutExpired> Expired { get; } = new();
    public IServiceProvider Services => _host.Services;
    public IBus Bus => _host.Services.GetRequiredService<IBus>();
    public IMessageScheduler Scheduler => _scope.ServiceProvider.GetRequiredService<IMessageScheduler>();
    public IRecurringMessageScheduler RecurringScheduler => _scope.ServiceProvider.GetRequiredService<IRecurringMessageScheduler>();

    public static async Task CreateSchemaAsync(TestDatabase database)
    {
        await using var db = new QuartzDbContext(new DbContextOptionsBuilder<QuartzDbContext>().UseNpgsql(database.ConnectionString).Options);
        await db.Database.EnsureCreatedAsync();
    }

    /// <summary>
    /// Starts a host named <paramref name="serviceName"/> (its scheduler queue and Quartz scheduler are named after it).
    /// <paramref name="sagaEndpoint"/>: null puts the timeout saga on an endpoint ConfigureEndpoints creates; true/false on
    /// a hand-configured <c>timeouts-by-hand</c> endpoint with/without <c>UseIntegrationScheduler</c>.
    /// </summary>
    public static async Task<SchedulerHost> StartAsync(TestBroker broker, TestDatabase database, string serviceName = "scheduler-specs",
        string reminderQueue = "reminder", bool? sagaEndpoint = null)
    {
        var host = new SchedulerHost();
        host._host = await IntegrationServiceHost.StartAsync(h => h.Services
            .AddSingleton(host)
            .AddMassTransit(x =>
            {
                x.AddIntegrationScheduler(o =>
                {
                    o.ServiceName = serviceName;
                    o.ConnectionString = database.ConnectionString;
                    o.CheckinInterval = TimeSpan.FromSeconds(2);
                    o.CheckinMisfireThreshold = TimeSpan.FromSeconds(4);
                });
                x.AddHandler<Reminder>(context =>
                {
                    host.Reminders.Enqueue(context);
                    return Task.CompletedTask;
                }).Endpoint(e => e.Name = reminderQueue);
                var saga = x.AddSagaStateMachine<TimeoutMachine, TimeoutState>().InMemoryRepository().Endpoint(e => e.Name = $"{serviceName}-timeouts");
                if (sagaEndpoint is not null)
                    saga.ExcludeFromConfigureEndpoints();
                x.AddHandler<TimeoutExpired>(context =>
                {
                    host.Expired.Enqueue(context.Message);
                    return Task.CompletedTask;
                }).Endpoint(e => e.Name = $"{serviceName}-expired");
                x.AddConsumer<FlakyConsumer, FlakyConsumerDefinition>();
                x.AddConfigureEndpointsCallback((_, name, e) =>
                {
                    if (name == "flaky")
                        e.UseScheduledRedelivery(r => r.Intervals(TimeSpan.FromSeconds(1)));
                });
                x.UsingRabbitMq((context, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    if (sagaEndpoint is { } useScheduler)
                    {
                        cfg.ReceiveEndpoint("timeouts-by-hand", e =>
                        {
                            if (useScheduler)
                                e.UseIntegrationScheduler(context);
                            e.ConfigureSaga<TimeoutState>(context);
                        });
                    }

                    cfg.ConfigureEndpoints(context);
                });
            }), o =>
        {
            o.Broker = broker;
            o.Database = database;
            o.CreateTables = false;   // the Quartz tables come from CreateSchemaAsync
        });
        host._scope = host._host.Services.CreateAsyncScope();
        return host;
    }

    int _disposed;

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        await _scope.DisposeAsync();
        await _host.DisposeAsync();
    }
}

/// <summary>Fails the first delivery of each work item, succeeds on the next.</summary>
public sealed class FlakyConsumer(SchedulerHost host) : IConsumer<FlakyWork>
{
    public Task Consume(ConsumeContext<FlakyWork> context)
    {
        host.FlakyAttempts.Enqueue(context);
        if (host.FlakyAttempts.Count(a => a.Message.WorkId == context.Message.WorkId) == 1)
            throw new InvalidOperationException("first attempt fails on purpose");
        return Task.CompletedTask;
    }
}

public sealed class FlakyConsumerDefinition : ConsumerDefinition<FlakyConsumer>
{
    public FlakyConsumerDefinition() => EndpointName = "flaky";
}
