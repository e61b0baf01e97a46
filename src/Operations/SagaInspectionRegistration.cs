using System.Linq.Expressions;
using Integration.Hosting;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary>Registers sagas for the gauge, inspection, timeline and repair, and the live graph.</summary>
public static class SagaInspectionRegistration
{
    /// <summary>
    /// Registers <typeparamref name="TSaga"/> once for everything operations shows of it: the <c>integration.saga.instances</c>
    /// gauge and the dashboard's counts (label <c>saga</c> = <paramref name="saga"/>), inspection (<c>GET /api/control/sagas</c>,
    /// <c>/sagas/{saga}/{correlationId}</c>), the timeline (a row per event in <c>saga_timeline</c>, written in the saga's
    /// transaction), the stuck flag (<c>Integration:Operations:Sagas:StuckAfterMinutes</c>), repairs (fire or cancel a
    /// pending timeout, finalize) and the saga's state machine in the graph. The saga must be mapped in the operations
    /// DbContext and registered with MassTransit (<c>AddSagaStateMachine</c>).
    /// </summary>
    /// <param name="operations">The operations builder.</param>
    /// <param name="saga">The name shown, e.g. <c>order-fulfillment</c>.</param>
    /// <param name="state">The instance's state property, e.g. <c>s =&gt; s.CurrentState</c>.</param>
    public static OperationsBuilder AddSaga<TSaga>(this OperationsBuilder operations, string saga, Expression<Func<TSaga, string>> state)
        where TSaga : class, SagaStateMachineInstance
    {
        ArgumentNullException.ThrowIfNull(operations);
        ArgumentException.ThrowIfNullOrWhiteSpace(saga);
        ArgumentNullException.ThrowIfNull(state);
        var services = operations.Services;
        foreach (var registered in services.Where(d => d.ServiceType == typeof(SagaInspector)).Select(d => d.ImplementationInstance).OfType<SagaInspector>())
        {
            if (registered.Saga == saga)
                throw new InvalidOperationException($"Saga '{saga}' is registered twice with AddSaga");
            if (registered.SagaType == typeof(TSaga))
                throw new InvalidOperationException($"{typeof(TSaga).Name} is registered twice with AddSaga (as '{registered.Saga}' and '{saga}')");
        }

        var inspector = new SagaInspector<TSaga>(saga, state);
        services.AddSingleton<SagaGauge>(inspector);
        services.AddSingleton<SagaInspector>(inspector);
        services.AddEventObserver<TSaga, SagaTimelineObserver<TSaga>>(provider => new SagaTimelineObserver<TSaga>(inspector,
            provider.GetRequiredService<OperationsDatabase>(), provider.GetRequiredService<IOptionsMonitor<SagaInspectionOptions>>(),
            provider.GetRequiredService<GraphCounters>(), provider.GetRequiredService<TimeProvider>()));
        return operations;
    }

    /// <summary>The services and commands behind <see cref="AddSaga{TSaga}"/> and the graph (called by <c>AddIntegrationOperations</c>).</summary>
    internal static void AddSagaInspectionAndGraph(IServiceCollection services, OperationsBuilder operations)
    {
        services.AddIntegrationOptions<SagaInspectionOptions>(SagaInspectionOptions.Section, SagaInspectionOptions.Validate);
        services.AddSingleton(provider => new SagaInspection(provider.GetServices<SagaInspector>(), provider.GetRequiredService<IServiceScopeFactory>(),
            provider.GetRequiredService<OperationsDatabase>(), provider, provider.GetRequiredService<IOptionsMonitor<SagaInspectionOptions>>(),
            provider.GetRequiredService<TimeProvider>()));
        services.AddSingleton<SagaTimelineRetention>();
        services.AddHostedService(provider => provider.GetRequiredService<SagaTimelineRetention>());
        services.AddSingleton<GraphCounters>();
        services.AddSingleton<GraphMonitor>();
        services.AddHostedService(provider => provider.GetRequiredService<GraphMonitor>());
        services.AddSingleton<IConfigureRabbitMqBus, GraphBusObserver>();
        operations.AddCommand<ListSagaInstances, SagaInspectionCommands>("sagas.list", ControlRole.Viewer)
            .AddCommand<ShowSagaInstance, SagaInspectionCommands>("saga.show", ControlRole.Viewer)
            .AddCommand<FireSagaTimeout, SagaInspectionCommands>("saga.timeout.fire", ControlRole.Operator)
            .AddCommand<CancelSagaTimeout, SagaInspectionCommands>("saga.timeout.cancel", ControlRole.Operator)
            .AddCommand<FinalizeSaga, SagaInspectionCommands>("saga.finalize", ControlRole.Operator)
            .AddCommand<ShowGraph, GraphCommands>("graph", ControlRole.Viewer);
    }

    /// <summary>Counts every message the bus receives, by queue, for the graph.</summary>
    sealed class GraphBusObserver(GraphMonitor monitor) : IConfigureRabbitMqBus
    {
        public void Configure(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator configurator) => configurator.ConnectReceiveObserver(monitor);
    }
}
