using MassTransit;
using MassTransit.Scheduling;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// The durable scheduler in one call: <c>x.AddIntegrationScheduler()</c> in <c>AddMassTransit</c>. Then state-machine
/// <c>Schedule(...)</c>, <c>IMessageScheduler</c>, <c>IRecurringMessageScheduler</c> and <c>UseScheduledRedelivery</c> go
/// through Quartz tables in PostgreSQL (<c>modelBuilder.AddIntegrationScheduler()</c> maps them).
/// </summary>
public static class DurableSchedulerRegistrationExtensions
{
    /// <summary>
    /// Registers Quartz with its job store in PostgreSQL (clustered, System.Text.Json), the scheduler queue's consumers
    /// (on <c>{service}-scheduler</c>), <see cref="IMessageScheduler"/> and <see cref="IRecurringMessageScheduler"/> pointing at
    /// that queue, the message scheduler on every endpoint <c>ConfigureEndpoints</c> creates, and a bus observer that
    /// starts Quartz once the bus is up and stops it with the bus. <see cref="DurableSchedulerOptions"/> are bound from
    /// <c>Integration:Scheduler</c>, then <paramref name="configure"/> runs, then the defaults are derived from the service
    /// name and everything is validated at start. A receive endpoint configured by hand that schedules needs
    /// <c>e.UseIntegrationScheduler(context)</c>; the bus refuses to start without it, naming the endpoint.
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationScheduler(this IBusRegistrationConfigurator configurator, Action<DurableSchedulerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        if (configurator.Any(d => d.ServiceType == typeof(SchedulerMarker)))
            throw new InvalidOperationException("AddIntegrationScheduler is called twice on this bus");
        configurator.AddSingleton<SchedulerMarker>();

        var options = configurator.AddOptions<DurableSchedulerOptions>().BindConfiguration(DurableSchedulerOptions.Section);
        if (configure is not null)
            options.Configure(configure);
        options.ValidateOnStart();
        configurator.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<DurableSchedulerOptions>, DurableSchedulerDefaults>());
        configurator.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DurableSchedulerOptions>, DurableSchedulerValidator>());
        configurator.AddMetrics();
        configurator.TryAddSingleton<SagasMetrics>();

        configurator.AddQuartz(quartz =>
        {
            quartz.UseDefaultThreadPool();
            quartz.UsePersistentStore(store =>
            {
                store.UsePostgres(dataSource => dataSource.DataSourceFactory = services =>
                    NpgsqlDataSource.Create(Resolved(services).ResolveConnectionString(services)));
                store.UseSystemTextJsonSerializer();
                store.UseClustering();
            });
        });

        // Quartz reads its options from the container when it builds the scheduler: take them from ours, bound and defaulted.
        configurator.AddOptions<QuartzSchedulerOptions>().Configure<IOptions<DurableSchedulerOptions>>((quartz, o) => quartz.InstanceName = o.Value.SchedulerName!);
        configurator.AddOptions<ThreadPoolOptions>().Configure<IOptions<DurableSchedulerOptions>>((pool, o) => pool.MaxConcurrency = o.Value.MaxConcurrency);
        configurator.AddOptions<AdoJobStoreOptions>().Configure<IOptions<DurableSchedulerOptions>>((store, o) =>
        {
            store.TablePrefix = o.Value.QuartzTablePrefix;
            store.MisfireThreshold = o.Value.MisfireThreshold;
        });
        configurator.AddOptions<ClusteringOptions>().Configure<IOptions<DurableSchedulerOptions>>((cluster, o) =>
        {
            cluster.Enabled = o.Value.Clustered;
            cluster.CheckinInterval = o.Value.CheckinInterval;
            cluster.CheckinMisfireThreshold = o.Value.CheckinMisfireThreshold;
        });
        configurator.TryAddTransient<ScheduledMessageJob>();

        configurator.AddConsumer<ScheduleMessageConsumer, SchedulerQueueDefinition<ScheduleMessageConsumer>>();
        configurator.AddConsumer<CancelScheduledMessageConsumer, SchedulerQueueDefinition<CancelScheduledMessageConsumer>>();

        // What AddMessageScheduler(address) registers, with the address known only once the options are resolved.
        configurator.TryAddScoped(provider => provider.GetRequiredService<ISendEndpointProvider>()
            .CreateMessageScheduler(provider.GetRequiredService<IBus>().Topology, Resolved(provider).SchedulerAddress));
        configurator.TryAddScoped<IRecurringMessageScheduler>(provider => new EndpointRecurringMessageScheduler(
            provider.GetRequiredService<ISendEndpointProvider>(), Resolved(provider).SchedulerAddress, provider.GetRequiredService<IBus>().Topology));

        // Every endpoint ConfigureEndpoints creates schedules (state-machine Schedule, ScheduleSend, scheduled redelivery) through the queue.
        configurator.AddConfigureEndpointsCallback((context, _, endpoint) => endpoint.UseMessageScheduler(Resolved(context).SchedulerAddress));
        configurator.AddBusObserver(provider => new SchedulerBusObserver(provider.GetRequiredService<ISchedulerFactory>(), Resolved(provider),
            provider.GetService<ILoggerFactory>()?.CreateLogger("Integration.Sagas.Scheduling") ?? NullLogger.Instance));
        return configurator;
    }

    /// <summary>
    /// Schedules this hand-configured endpoint's messages through the durable scheduler (endpoints created by
    /// <c>ConfigureEndpoints</c> have it already). Needed on a <c>cfg.ReceiveEndpoint(...)</c> whose saga schedules or which uses
    /// <c>UseScheduledRedelivery</c>; without it the bus does not start and says so.
    /// </summary>
    public static void UseIntegrationScheduler(this IReceiveEndpointConfigurator endpoint, IRegistrationContext context)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentNullException.ThrowIfNull(context);
        if (context.GetService<SchedulerMarker>() is null)
            throw new InvalidOperationException("UseIntegrationScheduler needs x.AddIntegrationScheduler(...) in AddMassTransit");
        endpoint.UseMessageScheduler(Resolved(context).SchedulerAddress);
    }

    static DurableSchedulerOptions Resolved(IServiceProvider services) => services.GetRequiredService<IOptions<DurableSchedulerOptions>>().Value;

    sealed class SchedulerMarker;
}

/// <summary>Puts the scheduler's consumers on its queue, named from the resolved options, with retries for a database outage.</summary>
sealed class SchedulerQueueDefinition<TConsumer> : ConsumerDefinition<TConsumer>
    where TConsumer : class, IConsumer
{
    public SchedulerQueueDefinition(IOptions<DurableSchedulerOptions> options) =>
        EndpointName = options.Value.QueueName ?? throw new InvalidOperationException("DurableSchedulerOptions.QueueName is not resolved");

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator, IConsumerConfigurator<TConsumer> consumerConfigurator,
        IRegistrationContext context) =>
        consumerConfigurator.UseMessageRetry(r => r.Intervals(200, 1000, 5000, 15000));
}

/// <summary>
/// The defaults that depend on the application: the service name (explicit, else <c>Integration:Host:ServiceName</c>, else
/// <c>IHostEnvironment.ApplicationName</c> kebab-cased), then <c>{service}-scheduler</c> for the queue and <c>{service}</c> for
/// the Quartz scheduler name.
/// </summary>
sealed class DurableSchedulerDefaults(IServiceProvider services) : IPostConfigureOptions<DurableSchedulerOptions>
{
    public void PostConfigure(string? name, DurableSchedulerOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.ServiceName))
        {
            var configured = services.GetService<IConfiguration>()?[DurableSchedulerOptions.HostServiceNameKey];
            options.ServiceName = !string.IsNullOrWhiteSpace(configured)
                ? configured
                : services.GetService<IHostEnvironment>()?.ApplicationName is { Length: > 0 } application ? DurableSchedulerOptions.KebabCase(application) : null;
        }

        // The application's database (Integration:Postgres:ConnectionString, as the hosting defaults bind it) unless told otherwise.
        if (options.ConnectionStringFactory is null && string.IsNullOrWhiteSpace(options.ConnectionString))
            options.ConnectionString = services.GetService<IConfiguration>()?[DurableSchedulerOptions.HostConnectionStringKey];

        options.SendToExchange ??= string.Equals(services.GetService<IConfiguration>()?[DurableSchedulerOptions.HostQueueTypeKey], "Quorum", StringComparison.OrdinalIgnoreCase);

        if (string.IsNullOrWhiteSpace(options.ServiceName))
            return; // the validator says what is missing
        options.QueueName ??= $"{options.ServiceName}-scheduler";
        options.SchedulerName ??= options.ServiceName;
    }
}

sealed class DurableSchedulerValidator : IValidateOptions<DurableSchedulerOptions>
{
    public ValidateOptionsResult Validate(string? name, DurableSchedulerOptions options)
    {
        var failures = options.Validate().ToList();
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
