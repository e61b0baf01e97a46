using MassTransit;
using MassTransit.Configuration;

namespace Integration.Hosting.Partitioning;

/// <summary>Sets the routing key of a published message to its partition (<c>hash(key) % N</c>).</summary>
sealed class PartitionRoutingFilter<T>(PartitionKey<T> key, string queue, int partitions) : IFilter<PublishContext<T>>
    where T : class
{
    public Task Send(PublishContext<T> context, IPipe<PublishContext<T>> next)
    {
        var value = key.KeyOf(context.Message);
        if (string.IsNullOrEmpty(value))
            throw new InvalidOperationException($"Partitioned queue '{queue}': {typeof(T).Name} has no partition key (the key selector returned null or empty)");
        context.TrySetRoutingKey(PartitionAssignment.RoutingKey(PartitionAssignment.PartitionOf(value, partitions)));
        return next.Send(context);
    }

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateFilterScope("partitionRouting");
        scope.Add("queue", queue);
        scope.Add("partitions", partitions);
        scope.Add("messageType", typeof(T).Name);
    }
}

sealed class PartitionRoutingSpecification<T>(PartitionKey<T> key, string queue, int partitions) : IPipeSpecification<PublishContext<T>>
    where T : class
{
    public void Apply(IPipeBuilder<PublishContext<T>> builder) => builder.AddFilter(new PartitionRoutingFilter<T>(key, queue, partitions));

    public IEnumerable<ValidationResult> Validate()
    {
        if (partitions < 1)
            yield return this.Failure("Partitions", $"Partitioned queue '{queue}': must be at least 1");
    }
}
