using MassTransit;

namespace Integration.Hosting;

/// <summary>
/// With <c>Integration:RabbitMq:QueueType=Quorum</c>, makes every receive endpoint of the bus a quorum queue
/// (<c>x-queue-type=quorum</c> and the delivery limit), whoever declares it: the routes, the sagas, the scheduler,
/// the services, the operations queues, the application's own <c>ReceiveEndpoint</c> calls. MassTransit copies a receive
/// queue's arguments to its <c>_error</c> and <c>_skipped</c> queues, so those are quorum queues too. Temporary endpoints
/// (auto-delete, not durable) cannot be quorum queues and stay as they are.
/// </summary>
sealed class QuorumQueues(RabbitMqOptions options) : IEndpointConfigurationObserver
{
    public void EndpointConfigured<T>(T configurator)
        where T : IReceiveEndpointConfigurator
    {
        if (options.QueueType != RabbitMqQueueType.Quorum || configurator is not IRabbitMqReceiveEndpointConfigurator rabbit)
            return;
        if (IsTemporary(configurator.InputAddress))
            return;
        rabbit.SetQuorumQueue();
        rabbit.SetQueueArgument("x-delivery-limit", options.QuorumDeliveryLimit);
    }

    /// <summary>MassTransit writes a queue's temporary nature into its address (<c>temporary=true</c>, <c>autodelete=true</c>, <c>durable=false</c>).</summary>
    internal static bool IsTemporary(Uri address)
    {
        var query = address.Query;
        return query.Contains("temporary=true", StringComparison.OrdinalIgnoreCase)
            || query.Contains("autodelete=true", StringComparison.OrdinalIgnoreCase)
            || query.Contains("durable=false", StringComparison.OrdinalIgnoreCase);
    }
}
