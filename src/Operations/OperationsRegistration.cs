using System.Linq.Expressions;
using Integration.Hosting;
using MassTransit;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>What a host adds to its operations: saga gauges and control commands of its own.</summary>
public sealed class OperationsBuilder
{
    readonly IServiceCollection _services;

    internal OperationsBuilder(IServiceCollection services) => _services = services;

    internal IServiceCollection Services => _services;

    /// <summary>
    /// Counts <typeparamref name="TSaga"/>'s instances by state for the dashboard and the <c>integration.saga.instances</c>
    /// gauge (label <c>saga</c> = <paramref name="saga"/>). The saga must be mapped in the operations DbContext.
    /// </summary>
    /// <param name="saga">The name shown, e.g. <c>order-fulfillment</c>.</param>
    /// <param name="state">The instance's state property, e.g. <c>s =&gt; s.CurrentState</c>.</param>
    public OperationsBuilder AddSagaGauge<TSaga>(string saga, Expression<Func<TSaga, string>> state)
        where TSaga : class, SagaStateMachineInstance
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(saga);
        ArgumentNullException.ThrowIfNull(state);
        _services.AddSingleton<SagaGauge>(new SagaGauge<TSaga>(saga, state));
        return this;
    }

    /// <summary>
    /// Adds a control command: <paramref name="action"/> (e.g. <c>stock.refresh</c>) runs <typeparamref name="THandler"/>
    /// for keys of at least <paramref name="role"/>, over <c>POST /api/control/commands</c>, the RabbitMQ control queue
    /// and <see cref="ControlBus.ExecuteAsync{TCommand}"/>. The command's constructor parameters are its target and
    /// arguments (see <see cref="ControlCommand"/>); the handler is a singleton.
    /// </summary>
    public OperationsBuilder AddCommand<TCommand, THandler>(string action, ControlRole role)
        where TCommand : class
        where THandler : class, IControlHandler<TCommand>
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(action);
        _services.TryAddSingleton<THandler>();
        _services.AddSingleton(ControlRegistration.For<TCommand, THandler>(action, role));
        return this;
    }
}

/// <summary>
/// Operations in one call plus one map call: the control bus (HTTP and RabbitMQ, keys with roles, audit), dead letters,
/// the message store, test-message probes, route and smart-proxy controls, log levels, operational metrics and the dashboard.
/// </summary>
public static class OperationsRegistration
{
    /// <summary>
    /// Adds operations for a host whose database is <typeparamref name="TDbContext"/> (its <c>OnModelCreating</c> calls
    /// <c>modelBuilder.AddIntegrationOperations()</c>). Needs <c>AddIntegrationDefaults</c> (the RabbitMQ settings and bus).
    /// Settings, validated at start: <c>Integration:ControlBus</c> (API keys and <c>Jwt</c> bearer tokens), <c>Integration:MessageStore</c>, <c>Integration:Probes</c>,
    /// <c>Integration:Operations:RefreshSeconds</c>.
    /// </summary>
    public static IHostApplicationBuilder AddIntegrationOperations<TDbContext>(this IHostApplicationBuilder builder, Action<OperationsBuilder>? configure = null)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        if (services.Any(d => d.ServiceType == typeof(OperationsDatabase)))
            throw new InvalidOperationException("AddIntegrationOperations is called twice; call it once and add sagas and commands in its configure callback");

        services.AddIntegrationOptions<ControlBusOptions>(ControlBusOptions.Section, ControlBusOptions.Validate);
        services.AddIntegrationOptions<MessageStoreOptions>(MessageStoreOptions.Section, MessageStoreOptions.Validate);
        services.AddIntegrationOptions<ProbeOptions>(ProbeOptions.Section, ProbeOptions.Validate);

        var logLevels = new LogLevelOverrides();
        ((IConfigurationBuilder)builder.Configuration).Add(logLevels);
        services.AddSingleton(logLevels);
        services.TryAddSingleton(TimeProvider.System);
        services.AddHttpClient(DeadLetterService.ManagementClient);
        services.AddSingleton(new OperationsDatabase(provider => provider.GetRequiredService<TDbContext>()));
        services.AddSingleton<OperationsMetrics>();
        services.AddSingleton<ReceiveEndpointRegistry>();
        services.AddSingleton<ControlAuthorization>();
        services.AddSingleton<ControlAuditLog>();
        services.AddSingleton(provider => new ControlBus(provider.GetServices<ControlRegistration>(), provider, provider.GetRequiredService<ControlAuditLog>(),
            provider.GetRequiredService<ILogger<ControlBus>>()));
        services.AddSingleton<DeadLetterService>();
        services.AddSingleton<FailedMessageService>();
        services.AddSingleton<MessageStore>();
        services.AddHostedService<MessageStoreConsumer>();
        services.AddSingleton<ProbeMonitor>();
        services.AddHostedService(provider => provider.GetRequiredService<ProbeMonitor>());
        services.AddHealthChecks().AddCheck<ProbeMonitor>("probes", tags: [IntegrationHealth.Ready]);
        services.AddSingleton<OperationsOverview>();
        services.AddHostedService(provider => provider.GetRequiredService<OperationsOverview>());
        services.AddHostedService<ControlBusStartupCheck>();
        services.AddSingleton<IConfigureRabbitMqBus, ControlQueue>();

        var operations = new OperationsBuilder(services);
        operations.AddCommand<ListRoutes, BuiltInCommands>("routes.list", ControlRole.Viewer)
            .AddCommand<ListEndpoints, BuiltInCommands>("endpoints.list", ControlRole.Viewer)
            .AddCommand<PauseEndpoint, BuiltInCommands>("endpoint.pause", ControlRole.Operator)
            .AddCommand<ResumeEndpoint, BuiltInCommands>("endpoint.resume", ControlRole.Operator)
            .AddCommand<SetLogLevel, BuiltInCommands>("log-level.set", ControlRole.Operator)
            .AddCommand<ListAudit, BuiltInCommands>("audit.list", ControlRole.Viewer)
            .AddCommand<ListDeadLetters, DeadLetterCommands>("dead-letters.list", ControlRole.Viewer)
            .AddCommand<ReplayDeadLetters, DeadLetterCommands>("dead-letters.replay", ControlRole.Operator)
            .AddCommand<DeleteDeadLetters, DeadLetterCommands>("dead-letters.delete", ControlRole.Operator)
            .AddCommand<SetRouteSwitch, RouteCommands>("route.switch", ControlRole.Operator)
            .AddCommand<ReplaceRoutingTable, RouteCommands>("route.table", ControlRole.Operator)
            .AddCommand<SetRateLimit, RouteCommands>("route.rate-limit", ControlRole.Operator)
            .AddCommand<ListMessages, MessageStoreCommands>("messages.list", ControlRole.Viewer)
            .AddCommand<ReplayMessages, MessageStoreCommands>("messages.replay", ControlRole.Operator)
            .AddCommand<ShowOverview, DashboardCommands>("overview", ControlRole.Viewer)
            .AddCommand<ListProxies, DashboardCommands>("proxies.list", ControlRole.Viewer)
            .AddCommand<ResetProxy, DashboardCommands>("proxy.reset", ControlRole.Operator)
            .AddCommand<ShowPermissions, BrokerPermissions>("permissions.show", ControlRole.Viewer)
            .AddCommand<ListFailures, FailedMessageCommands>("failures.list", ControlRole.Viewer)
            .AddCommand<ShowFailures, FailedMessageCommands>("failures.show", ControlRole.Viewer)
            .AddCommand<RetryFailures, FailedMessageCommands>("failures.retry", ControlRole.Operator)
            .AddCommand<EditAndRetryFailure, FailedMessageCommands>("failures.edit-retry", ControlRole.Operator)
            .AddCommand<DiscardFailures, FailedMessageCommands>("failures.discard", ControlRole.Operator)
            .AddCommand<ArchiveFailures, FailedMessageCommands>("failures.archive", ControlRole.Operator)
            .AddCommand<ShowEnvironment, EnvironmentCommands>("environment", ControlRole.Viewer);
        SagaInspectionRegistration.AddSagaInspectionAndGraph(services, operations);
        configure?.Invoke(operations);
        return builder;
    }

    /// <summary>Maps the control API under <c>/api/control</c> and the dashboard at <c>/dashboard</c>.</summary>
    public static IEndpointRouteBuilder MapIntegrationOperations(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<ControlBus>() is null)
            throw new InvalidOperationException("MapIntegrationOperations needs builder.AddIntegrationOperations<TDbContext>() first");
        endpoints.MapControlEndpoints("/api/control");
        endpoints.MapDashboard("/dashboard");
        return endpoints;
    }

    /// <summary>
    /// The per-instance control queue (<c>{QueuePrefix}-{service}-{instance}</c>, auto-delete) bound to the control
    /// command's exchange, and the endpoint registry that lets the control bus pause and resume endpoints.
    /// </summary>
    sealed class ControlQueue(IOptions<ControlBusOptions> options, IOptions<IntegrationHostOptions> host, IOptions<RabbitMqOptions> rabbit, ReceiveEndpointRegistry registry) : IConfigureRabbitMqBus
    {
        readonly string _instance = Guid.NewGuid().ToString("N")[..8];

        public void Configure(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator configurator)
        {
            configurator.ConnectBusObserver(new EndpointRegistryConnector(registry));
            configurator.ReceiveEndpoint($"{options.Value.QueuePrefix}-{host.Value.ServiceName}-{_instance}", e =>
            {
                rabbit.Value.ConfigureInstanceQueue(e);

                e.Consumer(() => new ControlCommandConsumer(context.GetRequiredService<ControlBus>(), context.GetRequiredService<ControlAuthorization>()));
            });
        }
    }
}

/// <summary>Connects the endpoint registry to the bus as soon as it exists, before any endpoint starts.</summary>
sealed class EndpointRegistryConnector(ReceiveEndpointRegistry registry) : IBusObserver
{
    public void PostCreate(IBus bus) => bus.ConnectReceiveEndpointObserver(registry);

    public void CreateFaulted(Exception exception)
    {
    }

    public Task PreStart(IBus bus) => Task.CompletedTask;

    public Task PostStart(IBus bus, Task<BusReady> busReady) => Task.CompletedTask;

    public Task StartFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    public Task PreStop(IBus bus) => Task.CompletedTask;

    public Task PostStop(IBus bus) => Task.CompletedTask;

    public Task StopFaulted(IBus bus, Exception exception) => Task.CompletedTask;
}

/// <summary>Warns at start when no control bus key is configured (every control call will be refused).</summary>
sealed partial class ControlBusStartupCheck(IOptions<ControlBusOptions> options, ILogger<ControlBusStartupCheck> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.ApiKeys.Count == 0)
            LogNoKeys(logger, ControlBusOptions.Section);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "No control bus key is configured ({Section}:ApiKeys): every control command will be refused")]
    static partial void LogNoKeys(ILogger logger, string section);
}
