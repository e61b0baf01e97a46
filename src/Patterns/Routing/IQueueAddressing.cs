using MassTransit;

namespace Integration.Patterns.Routing;

/// <summary>
/// How route steps address the queue they send to. Without one registered they send to <c>queue:{name}</c>, which
/// makes MassTransit declare the queue (classic, no arguments) before the first send. A host whose queues are quorum
/// queues registers one that declares the destination as such and sends to its exchange, since a queue cannot be
/// re-declared with other arguments than it has (<c>Integration:RabbitMq:QueueType</c> in Integration.Hosting).
/// </summary>
public interface IQueueAddressing
{
    /// <summary>The address to send to so the message reaches queue <paramref name="queue"/>, the queue declared as needed.</summary>
    ValueTask<Uri> SendAddressAsync(string queue, CancellationToken cancellationToken);
}

/// <summary>The queue addressing of the route being consumed (a payload set by the route's endpoint).</summary>
internal static class QueueAddressing
{
    public static ValueTask<Uri> SendAddressAsync(ConsumeContext context, IServiceProvider? services, string queue, CancellationToken cancellationToken)
    {
        var addressing = context.TryGetPayload<IQueueAddressing>(out var payload)
            ? payload
            : services?.GetService(typeof(IQueueAddressing)) as IQueueAddressing;
        return addressing?.SendAddressAsync(queue, cancellationToken) ?? ValueTask.FromResult(new Uri($"queue:{queue}"));
    }
}
