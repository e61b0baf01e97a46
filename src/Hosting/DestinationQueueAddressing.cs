using System.Collections.Concurrent;
using Integration.Patterns.Routing;
using Microsoft.Extensions.Options;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Integration.Hosting;

/// <summary>
/// Where route steps send, each destination declared once per process on a connection and a channel of its own before
/// the first send to it:
/// <list type="bullet">
/// <item>Classic queues: declared as MassTransit declares the queue of a <c>queue:{name}</c> address (durable, no
/// arguments, bound to a fanout exchange of the same name), then the message goes to <c>queue:{name}</c>.</item>
/// <item>Quorum queues: declared as a quorum queue bound to its exchange, as MassTransit binds a receive endpoint's
/// queue, and the message goes to <c>exchange:{name}</c>: MassTransit would otherwise re-declare the queue without
/// arguments, which a quorum queue refuses (<c>PRECONDITION_FAILED - inequivalent arg 'x-queue-type'</c>).</item>
/// </list>
/// Why a channel of its own: MassTransit sends from a consumer on the receive endpoint's channel, and RabbitMQ closes a
/// channel that a declaration was refused on (<c>ACCESS_REFUSED</c> for a destination the user may not configure,
/// <c>PRECONDITION_FAILED</c> for one that exists with other arguments). Refused there, the message could be neither
/// acknowledged nor moved to the route's <c>_error</c> queue and would come back forever. Refused here, the send fails
/// with <see cref="DestinationRefusedException"/> naming the broker's reason, and the message is retried and then moved
/// to <c>_error</c> with that reason in its headers.
/// </summary>
sealed class DestinationQueueAddressing(IOptions<RabbitMqOptions> options, IOptions<IntegrationHostOptions> host) : IQueueAddressing, IAsyncDisposable
{
    readonly ConcurrentDictionary<string, Uri> _declared = new(StringComparer.Ordinal);   // queue → the address its sends go to
    readonly SemaphoreSlim _gate = new(1, 1);
    IConnection? _connection;

    public async ValueTask<Uri> SendAddressAsync(string queue, CancellationToken cancellationToken)
    {
        // The hot path: one lookup, no allocation, once the destination is declared.
        return _declared.TryGetValue(queue, out var address) ? address : await DeclareAsync(options.Value, queue, cancellationToken).ConfigureAwait(false);
    }

    async Task<Uri> DeclareAsync(RabbitMqOptions settings, string queue, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_declared.TryGetValue(queue, out var declared))
                return declared;
            if (_connection is not { IsOpen: true })
            {
                if (_connection is not null)
                    await _connection.DisposeAsync().ConfigureAwait(false);
                _connection = await RabbitMqConnections.ConnectAsync(settings, $"{host.Value.ServiceName}-destinations", cancellationToken).ConfigureAwait(false);
            }

            // A channel per declaration: a refused declaration closes its channel, never the next one's.
            await using var channel = await _connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            try
            {
                await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: settings.DurableQueueArguments(), cancellationToken: cancellationToken).ConfigureAwait(false);
                await channel.ExchangeDeclareAsync(queue, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
                await channel.QueueBindAsync(queue, queue, "", cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch (OperationInterruptedException refused) when (refused.ShutdownReason is { } reason)
            {
                throw new DestinationRefusedException(queue, reason.ReplyCode, reason.ReplyText, refused);
            }

            var address = settings.QueueType == RabbitMqQueueType.Quorum ? new Uri($"exchange:{queue}") : new Uri($"queue:{queue}");
            _declared[queue] = address;
            return address;
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

/// <summary>
/// The broker refused to declare a route's destination queue (<c>ACCESS_REFUSED</c>: the host's user may not configure
/// it; <c>PRECONDITION_FAILED</c>: it exists with other arguments). The message that was to be sent there is retried and
/// then moved to the route's <c>_error</c> queue with this message as the reason.
/// </summary>
public sealed class DestinationRefusedException : InvalidOperationException
{
    /// <summary>Creates the exception for <paramref name="queue"/> with the broker's reply.</summary>
    public DestinationRefusedException(string queue, int replyCode, string replyText, Exception? inner = null)
        : base($"The broker refused destination queue '{queue}' ({replyCode} {replyText}); nothing was sent there. Grant the host's user configure and write on it (GET /api/control/permissions) or fix the route.", inner)
    {
        Queue = queue;
        ReplyCode = replyCode;
    }

    /// <summary>The destination queue.</summary>
    public string Queue { get; }

    /// <summary>The AMQP reply code (403 access refused, 406 precondition failed, …).</summary>
    public int ReplyCode { get; }
}
