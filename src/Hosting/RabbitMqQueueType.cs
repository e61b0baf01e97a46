namespace Integration.Hosting;

/// <summary>The type of the queues the framework declares (<c>Integration:RabbitMq:QueueType</c>).</summary>
public enum RabbitMqQueueType
{
    /// <summary>Classic queues: one node holds each queue (RabbitMQ's default).</summary>
    Classic,

    /// <summary>
    /// Quorum queues: each queue replicated over the cluster's nodes (Raft), surviving the loss of a minority of nodes.
    /// Always durable; temporary (auto-delete, exclusive) queues cannot be quorum queues.
    /// </summary>
    Quorum,
}
