using System.Text;
using Integration.Testing;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.Support;

/// <summary>The real host in-process (<see cref="IntegrationTestHost{TProgram}"/>) on its own vhost and database, with a raw AMQP connection for playing a misbehaving producer.</summary>
public sealed class InProcessHost : IAsyncDisposable
{
    readonly IntegrationTestHost<Program> _host;

    InProcessHost(IntegrationTestHost<Program> host, IConnection connection)
    {
        _host = host;
        Connection = connection;
    }

    /// <summary>The host's vhost.</summary>
    public TestBroker Broker => _host.Broker;

    /// <summary>The host's database.</summary>
    public TestDatabase Database => _host.Database;

    /// <summary>HTTP client of the host.</summary>
    public HttpClient Client => _host.Client;

    /// <summary>A plain AMQP connection to the host's vhost.</summary>
    public IConnection Connection { get; }

    /// <summary>Starts the host with <paramref name="extra"/> settings and waits until it is ready.</summary>
    public static async Task<InProcessHost> StartAsync(string prefix, IDictionary<string, string?>? extra = null)
    {
        var host = await IntegrationTestHost<Program>.StartAsync(options =>
        {
            options.NamePrefix = prefix;
            foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
                options.Settings[key] = value;
        });
        try
        {
            return new InProcessHost(host, await new ConnectionFactory { Uri = host.Broker.AmqpUri }.CreateConnectionAsync("misbehaving-producer"));
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    /// <summary>Publishes <paramref name="body"/> straight to <paramref name="queue"/> (default exchange) with a confirm.</summary>
    public async Task PublishAsync(string queue, string body, string? contentType, string messageId, IDictionary<string, object?>? headers = null)
    {
        await using var channel = await Connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties { ContentType = contentType, Persistent = true, MessageId = messageId, Headers = headers };
        await channel.BasicPublishAsync("", queue, mandatory: true, properties, Encoding.UTF8.GetBytes(body));
    }

    /// <summary>Takes messages from <paramref name="queue"/> until one with <paramref name="messageId"/> arrives (others are dropped), or null.</summary>
    public async Task<BasicGetResult?> TakeAsync(string queue, string messageId, TimeSpan? timeout = null)
    {
        BasicGetResult? found = null;
        await Eventually.TrueAsync(async () =>
        {
            await using var channel = await Connection.CreateChannelAsync();
            try
            {
                while (await channel.BasicGetAsync(queue, autoAck: true) is { } message)
                {
                    if (message.BasicProperties.MessageId == messageId)
                    {
                        found = message;
                        return true;
                    }
                }
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
            }

            return false;
        }, timeout ?? TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(100));
        return found;
    }

    /// <summary>Declares a queue of the test's own bound to the exchange of message type <paramref name="exchange"/> (e.g. <c>Integration.Host.Fulfillment:PartsReserved</c>).</summary>
    public async Task<string> TapAsync(string exchange)
    {
        await using var channel = await Connection.CreateChannelAsync();
        var queue = $"tap-{Guid.NewGuid():N}";
        await channel.ExchangeDeclareAsync(exchange, ExchangeType.Fanout, durable: true);
        await channel.QueueDeclareAsync(queue, durable: false, exclusive: false, autoDelete: false);
        await channel.QueueBindAsync(queue, exchange, "");
        return queue;
    }

    /// <summary>A header as text ("" when absent).</summary>
    public static string Header(BasicGetResult message, string name)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), _ => value?.ToString() ?? "" }
            : "";
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await Connection.DisposeAsync();
        await _host.DisposeAsync();
    }
}
