using System.Text;
using Integration.Testing;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Reliability.Tests.Support;

/// <summary>The real host in-process (WebApplicationFactory) on its own vhost and database, with a raw AMQP connection for playing a misbehaving producer.</summary>
public sealed class InProcessHost : IAsyncDisposable
{
    readonly Factory _factory;

    InProcessHost(TestBroker broker, TestDatabase database, Factory factory, IConnection connection)
    {
        Broker = broker;
        Database = database;
        _factory = factory;
        Connection = connection;
        Client = factory.CreateClient();
    }

    /// <summary>The host's vhost.</summary>
    public TestBroker Broker { get; }

    /// <summary>The host's database.</summary>
    public TestDatabase Database { get; }

    /// <summary>HTTP client of the host.</summary>
    public HttpClient Client { get; }

    /// <summary>A plain AMQP connection to the host's vhost.</summary>
    public IConnection Connection { get; }

    /// <summary>Starts the host with <paramref name="extra"/> settings and waits until it is ready.</summary>
    public static async Task<InProcessHost> StartAsync(string prefix, IDictionary<string, string?>? extra = null)
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        var broker = await infrastructure.CreateVirtualHostAsync(prefix);
        var database = await infrastructure.CreateDatabaseAsync(prefix);
        var settings = new Dictionary<string, string?>(broker.HostSettings()) { ["Integration:Postgres:ConnectionString"] = database.ConnectionString };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
            settings[key] = value;
        var factory = new Factory(settings);
        var connection = await new ConnectionFactory { Uri = broker.AmqpUri }.CreateConnectionAsync("misbehaving-producer");
        var host = new InProcessHost(broker, database, factory, connection);
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            using var response = await host.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            return response.IsSuccessStatusCode;
        }, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(250)), Is.True, "host never became ready");
        return host;
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
        Client.Dispose();
        await Connection.DisposeAsync();
        await _factory.DisposeAsync();
        await Broker.DisposeAsync();
        await Database.DisposeAsync();
    }

    sealed class Factory(IReadOnlyDictionary<string, string?> settings) : WebApplicationFactory<Program>
    {
        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            builder.UseEnvironment("Testing");
            builder.ConfigureAppConfiguration(configuration => configuration.AddInMemoryCollection(settings));
        }
    }
}
