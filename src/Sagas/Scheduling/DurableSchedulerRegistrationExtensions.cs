using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// The durable scheduler in two calls: <c>x.AddQuartzScheduler(o =&gt; ...)</c> in <c>AddMassTransit</c> and
/// <c>cfg.UseQuartzScheduler(context)</c> in the bus configuration. Then state-machine <c>Schedule(...)</c>,
/// <c>IMessageScheduler</c> and <c>UseScheduledRedelivery</c> go through Quartz tables in PostgreSQL.
/// </summary>
public static class DurableSchedulerRegistrationExtensions
{
    /// <summary>
    /// Registers Quartz with its job store in PostgreSQL (clustered, System.Text.Json), the scheduler queue's consumers
    /// and MassTransit's <see cref="IMessageScheduler"/> pointing at that queue. The <c>qrtz_</c> tables come from the
    /// application's migrations: call <c>modelBuilder.AddQuartzSchema()</c> in its DbContext.
    /// </summary>
    public static IBusRegistrationConfigurator AddQuartzScheduler(this IBusRegistrationConfigurator configurator, Action<DurableSchedulerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new DurableSchedulerOptions();
        configure(options);
        options.Validate();

        configurator.TryAddSingleton(options);
        configurator.AddQuartz(quartz =>
        {
            quartz.ConfigureScheduler(scheduler => scheduler.InstanceName = options.SchedulerName);
            quartz.UseDefaultThreadPool(options.MaxConcurrency);
            quartz.UsePersistentStore(store =>
            {
                store.UsePostgres(dataSource => dataSource.DataSourceFactory = services => NpgsqlDataSource.Create(options.ResolveConnectionString(services)));
                store.UseSystemTextJsonSerializer();
                store.ConfigureStore(jobStore =>
                {
                    jobStore.TablePrefix = options.TablePrefix;
                    jobStore.MisfireThreshold = options.MisfireThreshold;
                });
                if (options.Clustered)
                {
                    store.UseClustering(cluster =>
                    {
                        cluster.CheckinInterval = options.CheckinInterval;
                        cluster.CheckinMisfireThreshold = options.CheckinMisfireThreshold;
                    });
                }
            });
        });
        configurator.TryAddTransient<ScheduledMessageJob>();

        configurator.AddConsumer<ScheduleMessageConsumer>((_, consumer) => consumer.UseMessageRetry(r => r.Intervals(200, 1000, 5000, 15000)))
            .Endpoint(e => e.Name = options.QueueName);
        configurator.AddConsumer<CancelScheduledMessageConsumer>((_, consumer) => consumer.UseMessageRetry(r => r.Intervals(200, 1000, 5000, 15000)))
            .Endpoint(e => e.Name = options.QueueName);
        configurator.AddMessageScheduler(options.SchedulerAddress);
        return configurator;
    }

    /// <summary>
    /// Sends scheduled messages of every consumer on this bus to the scheduler queue, and starts Quartz once the bus
    /// is up (so nothing fires into a bus that cannot send yet) and stops it with the bus.
    /// </summary>
    public static void UseQuartzScheduler(this IBusFactoryConfigurator configurator, IBusRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(context);
        var options = context.GetService<DurableSchedulerOptions>()
            ?? throw new InvalidOperationException("UseQuartzScheduler needs AddQuartzScheduler(...) in AddMassTransit");
        configurator.UseMessageScheduler(options.SchedulerAddress);
        var logger = context.GetService<ILoggerFactory>()?.CreateLogger("Integration.Sagas.Scheduling") ?? NullLogger.Instance;
        configurator.ConnectBusObserver(new SchedulerBusObserver(context.GetRequiredService<ISchedulerFactory>(), logger));
    }
}

/// <summary>
/// Starts Quartz after the bus started and shuts it down when the bus stops. The scheduler is kept from the start:
/// at stop the container may already be disposing, so it is not asked again, and a failure to stop is logged, never thrown.
/// </summary>
sealed partial class SchedulerBusObserver(ISchedulerFactory schedulerFactory, ILogger logger) : IBusObserver
{
    IScheduler? _scheduler;

    public void PostCreate(IBus bus)
    {
    }

    public void CreateFaulted(Exception exception)
    {
    }

    public Task PreStart(IBus bus) => Task.CompletedTask;

    public async Task PostStart(IBus bus, Task<BusReady> busReady)
    {
        var scheduler = await schedulerFactory.GetScheduler().ConfigureAwait(false);
        await scheduler.Start().ConfigureAwait(false);
        _scheduler = scheduler;
        LogStarted(logger, await scheduler.GetSchedulerInstanceId().ConfigureAwait(false));
    }

    public Task StartFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    public async Task PreStop(IBus bus)
    {
        if (_scheduler is not { } scheduler)
            return;
        try
        {
            await scheduler.Standby().ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is ObjectDisposedException or SchedulerException or InvalidOperationException)
        {
            LogStopFailed(logger, exception);
        }
    }

    public async Task PostStop(IBus bus)
    {
        if (Interlocked.Exchange(ref _scheduler, null) is not { } scheduler)
            return;
        try
        {
            await scheduler.Shutdown(waitForJobsToComplete: true).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is ObjectDisposedException or SchedulerException or InvalidOperationException)
        {
            LogStopFailed(logger, exception);
        }
    }

    public Task StopFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Durable scheduler started (instance {InstanceId})")]
    static partial void LogStarted(ILogger logger, string instanceId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Durable scheduler did not stop cleanly; its triggers stay in the database")]
    static partial void LogStopFailed(ILogger logger, Exception exception);
}
