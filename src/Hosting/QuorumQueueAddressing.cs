using System.Collections.Concurrent;
using Integration.Patterns.Routing;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;

namespace Integration.Hosting;

/// <summary>
/// Where route steps send. Classic queues: <c>queue:{name}</c> (MassTransit declares the queue). Quorum queues: the
/// destination is declared once per process as a quorum queue bound to its exchange, as MassTransit binds a receive
/// endpoint's queue, and the message goes to <c>exchange:{name}</c>: MassTransit would otherwise re-declare the queue
/// without arguments, which a quorum queue refuses (<c>PRECONDITION_FAILED - inequivalent arg 'x-queue-type'</c>).
/// A declaration that fails (a classic queue of that name already there) fails the send, so the message is retried
/// and then moved to the route's <c>_error</c> queue with the reason.
/// </summary>
sealed class QuorumQueueAddressing(IOptions<RabbitMqOptions> options, IOptions<IntegrationHostOptions> host) : IQueueAddressing, IAsyncDisposable
{
    readonly ConcurrentDictionary<string, bool> _declared = new(StringComparer.Ordinal);
    readonly SemaphoreSlim _gate = new(1, 1);
    IConnection? _connection;

    public async ValueTask<Uri> SendAddressAsync(string queue, CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (settings.QueueType != RabbitMqQueueType.Quorum)
            return new Uri($"queue:{queue}");
        if (!_declared.ContainsKey(queue))
            await DeclareAsync(settings, queue, cancellationToken).ConfigureAwait(false);
        return new Uri($"exchange:{queue}");
    }

    async Task DeclareAsync(RabbitMqOptions settings, string queue, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_declared.ContainsKey(queue))
                return;
            if (_connection is not { IsOpen: true })
            {
                if (_connection is not null)
                    await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = await RabbitMqConnections.ConnectAsync(settings, $"{host.Value.ServiceName}-destinations", cancellationToken).ConfigureAwait(false);
            }

            // A channel per declaration: a refused declaration closes its channel, never the next one's.
            await using var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: settings.DurableQueueArguments(), cancellationToken: cancellationToken).ConfigureAwait(false);
            await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            await channel.QueueBindAsync(queue, queue, "", cancellationToken: cancellationToken).ConfigureAwait(false);
            _declared[queue] = true;
        }
        finally
        {
            _gate.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
            await _connection.DisposeAsync().ConfigureAwait(false);
        _gate.Dispose();
    }
}
