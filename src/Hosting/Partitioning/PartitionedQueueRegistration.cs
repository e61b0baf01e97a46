using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Hosting.Partitioning;

/// <summary>
/// <c>services.AddIntegrationPartitionedQueue("order-fulfillment", p =&gt; p.Key&lt;OrderSubmitted&gt;(m =&gt; m.OrderId), (context, e) =&gt; e.ConfigureSaga&lt;State&gt;(context))</c>:
/// the topology, the publish filter and the partition endpoints in one call (see <see cref="PartitionedQueueConfigurator"/>).
/// </summary>
public static class PartitionedQueueRegistration
{
    /// <summary>
    /// Declares the partitioned queue on the bus of <c>AddIntegrationDefaults</c>: every published message of a keyed type
    /// gets the routing key of its partition; each message type's exchange is bound to the direct exchange
    /// <c>{queue}-partitions</c>, bound by partition to <c>{queue}-p{i}</c> (single active consumer); each partition
    /// endpoint is configured by <paramref name="configureEndpoint"/> (the consumers or the saga; leave them out of
    /// <c>ConfigureEndpoints</c>). Fails at once with every invalid setting.
    /// </summary>
    public static IServiceCollection AddIntegrationPartitionedQueue(this IServiceCollection services, string queue,
        Action<PartitionedQueueConfigurator> configure, Action<IBusRegistrationContext, IRabbitMqReceiveEndpointConfigurator> configureEndpoint)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(queue);
        ArgumentNullException.ThrowIfNull(configure);
        ArgumentNullException.ThrowIfNull(configureEndpoint);
        var definition = new PartitionedQueueConfigurator(queue);
        configure(definition);
        var failures = definition.Validate().ToList();
        if (failures.Count > 0)
            throw new InvalidOperationException(string.Join(Environment.NewLine, failures));
        services.AddSingleton<IConfigureRabbitMqBus>(new PartitionedQueueBusConfiguration(definition, configureEndpoint));
        return services;
    }

    /// <summary>The partition queue names of <paramref name="queue"/>: <c>{queue}-p0</c> .. <c>{queue}-p{N-1}</c>.</summary>
    public static IReadOnlyList<string> PartitionQueues(string queue, int partitions) =>
        Enumerable.Range(0, partitions).Select(i => $"{queue}-p{i}").ToArray();

    sealed class PartitionedQueueBusConfiguration(PartitionedQueueConfigurator definition,
        Action<IBusRegistrationContext, IRabbitMqReceiveEndpointConfigurator> configureEndpoint) : IConfigureRabbitMqBus
    {
        public void Configure(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator configurator)
        {
            var queue = definition.Queue;
            var partitions = definition.Partitions;
            configurator.ConfigurePublish(publish =>
            {
                foreach (var key in definition.Keys)
                    key.AddPublishFilter(publish, queue, partitions);
            });
            var exchanges = definition.Keys.Select(k => k.ExchangeName(configurator)).ToArray();
            var names = PartitionQueues(queue, partitions);
            for (var i = 0; i < partitions; i++)
            {
                var partition = i;
                configurator.ReceiveEndpoint(names[i], e =>
                {
                    e.ConfigureConsumeTopology = false;
                    e.SingleActiveConsumer = true;
                    e.Bind($"{queue}-partitions", x =>
                    {
                        x.ExchangeType = RabbitMQ.Client.ExchangeType.Direct;
                        x.RoutingKey = PartitionAssignment.RoutingKey(partition);
                        // A message published without the partition routing key (a host without this registration)
                        // goes to partition 0 instead of being dropped as unroutable.
                        x.SetExchangeArgument("alternate-exchange", names[0]);
                        // The message type's own exchange stays fanout (as every other subscriber declares it) and
                        // forwards the message with its routing key; only the partitions exchange routes by it.
                        foreach (var exchange in exchanges)
                        {
                            x.Bind(exchange, type =>
                            {
                                type.ExchangeType = RabbitMQ.Client.ExchangeType.Fanout;
                                type.RoutingKey = "";
                            });
                        }
                    });
                    e.ConcurrentMessageLimit = definition.ConcurrentMessageLimit;
                    if (definition.ConcurrentMessageLimit > 1)
                    {
                        var partitioner = e.CreatePartitioner(definition.ConcurrentMessageLimit);
                        foreach (var key in definition.Keys)
                            key.AddInProcessPartitioner(e, partitioner, queue);
                    }

                    configureEndpoint(context, e);
                });
            }
        }
    }
}
