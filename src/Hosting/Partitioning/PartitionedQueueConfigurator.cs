using System.Security.Cryptography;
using System.Text;
using MassTransit;

namespace Integration.Hosting.Partitioning;

/// <summary>
/// Ordered processing per key across competing hosts: the messages of a queue are spread over <see cref="Partitions"/>
/// partition queues <c>{queue}-p{i}</c> by a key (<c>partition = FNV-1a(key) % Partitions</c>), each a
/// single-active-consumer queue (a quorum queue with <c>Integration:RabbitMq:QueueType=Quorum</c>). Every host consumes
/// every partition; the broker lets one consumer per partition be active and moves the partition to another host when
/// that one stops or dies. Inside a host no two messages of one key are in flight at once.
/// </summary>
public sealed class PartitionedQueueConfigurator
{
    readonly List<PartitionKey> _keys = [];

    internal PartitionedQueueConfigurator(string queue) => Queue = queue;

    /// <summary>The base queue name: partition queues are <c>{Queue}-p0</c> .. <c>{Queue}-p{N-1}</c>, the exchange <c>{Queue}-partitions</c>.</summary>
    public string Queue { get; }

    /// <summary>Number of partition queues (1-1024). Fixed for a virtual host: changing it moves keys to other partitions.</summary>
    public int Partitions { get; set; } = 4;

    /// <summary>Messages in flight per partition queue in one host (1-1000, default 8), never two of one key at once.</summary>
    public int ConcurrentMessageLimit { get; set; } = 8;

    /// <summary>The name the settings are known by in messages (e.g. <c>Integration:Fulfillment:Partitions</c>).</summary>
    public string? SettingName { get; set; }

    internal IReadOnlyList<PartitionKey> Keys => _keys;

    /// <summary>Partitions <typeparamref name="T"/> by <paramref name="key"/> (a correlation id, a device id, a property).</summary>
    public PartitionedQueueConfigurator Key<T>(Func<T, string?> key)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_keys.Any(k => k.MessageType == typeof(T)))
            throw new ArgumentException($"Partitioned queue '{Queue}': a key for {typeof(T).Name} is already defined", nameof(key));
        _keys.Add(new PartitionKey<T>(key));
        return this;
    }

    /// <summary>Partitions <typeparamref name="T"/> by a <see cref="Guid"/> key (e.g. the saga's correlation id).</summary>
    public PartitionedQueueConfigurator Key<T>(Func<T, Guid> key)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(key);
        return Key<T>(m => key(m).ToString("N"));
    }

    /// <summary>Every failure of the definition, each naming the queue and the setting.</summary>
    public IEnumerable<string> Validate()
    {
        var setting = SettingName ?? $"partitioned queue '{Queue}'";
        if (string.IsNullOrWhiteSpace(Queue))
            yield return "A partitioned queue needs a queue name";
        if (Partitions is < 1 or > 1024)
            yield return $"{setting}: Partitions must be between 1 and 1024 (was {Partitions})";
        if (ConcurrentMessageLimit is < 1 or > 1000)
            yield return $"{setting}: ConcurrentMessageLimit must be between 1 and 1000 (was {ConcurrentMessageLimit})";
        if (_keys.Count == 0)
            yield return $"{setting}: no message type has a key; call Key<T>(m => ...) for every message the queue receives";
    }
}

/// <summary>The stable partition of a key: the same key lands on the same partition in every process and release.</summary>
public static class PartitionAssignment
{
    /// <summary><c>FNV-1a-32(UTF-8 key) % partitions</c>.</summary>
    public static int PartitionOf(string key, int partitions)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1);
        var hash = 2166136261u;
        foreach (var b in Encoding.UTF8.GetBytes(key))
        {
            hash ^= b;
            hash *= 16777619u;
        }

        return (int)(hash % (uint)partitions);
    }

    /// <summary>The routing key of partition <paramref name="partition"/> on the <c>{queue}-partitions</c> exchange.</summary>
    public static string RoutingKey(int partition) => partition.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A key as a <see cref="Guid"/> for MassTransit's in-process partitioner.</summary>
    internal static Guid InProcessKey(string key) => new(MD5.HashData(Encoding.UTF8.GetBytes(key)));
}

abstract class PartitionKey
{
    public abstract Type MessageType { get; }

    public abstract string ExchangeName(IBusFactoryConfigurator bus);

    public abstract void AddPublishFilter(IPublishPipeConfigurator publish, string queue, int partitions);

    public abstract void AddInProcessPartitioner(IReceiveEndpointConfigurator endpoint, IPartitioner partitioner, string queue);
}

sealed class PartitionKey<T>(Func<T, string?> key) : PartitionKey
    where T : class
{
    public override Type MessageType => typeof(T);

    public override string ExchangeName(IBusFactoryConfigurator bus) => bus.MessageTopology.GetMessageTopology<T>().EntityName;

    public string? KeyOf(T message) => key(message);

    public override void AddPublishFilter(IPublishPipeConfigurator publish, string queue, int partitions) =>
        publish.AddPipeSpecification<T>(new PartitionRoutingSpecification<T>(this, queue, partitions));

    public override void AddInProcessPartitioner(IReceiveEndpointConfigurator endpoint, IPartitioner partitioner, string queue) =>
        endpoint.UsePartitioner<T>(partitioner, context => PartitionAssignment.InProcessKey(KeyOf(context.Message)
            ?? throw new InvalidOperationException($"Partitioned queue '{queue}': {typeof(T).Name} {context.MessageId} has no partition key")));
}
