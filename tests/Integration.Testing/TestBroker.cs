using MassTransit;

namespace Integration.Testing;

/// <summary>A RabbitMQ virtual host that belongs to one test: no other test sees its exchanges or queues.</summary>
public sealed class TestBroker : IAsyncDisposable
{
    readonly IntegrationInfrastructure _infrastructure;

    internal TestBroker(IntegrationInfrastructure infrastructure, string virtualHost)
    {
        _infrastructure = infrastructure;
        VirtualHost = virtualHost;
    }

    public string VirtualHost { get; }
    public string Host => _infrastructure.RabbitMqUri.Host;
    public ushort Port => (ushort)(_infrastructure.RabbitMqUri.IsDefaultPort || _infrastructure.RabbitMqUri.Port <= 0 ? 5672 : _infrastructure.RabbitMqUri.Port);
    public string Username => _infrastructure.RabbitMqUser;
    public string Password => _infrastructure.RabbitMqPassword;

    /// <summary>AMQP URI of this virtual host, for RabbitMQ.Client.</summary>
    public Uri AmqpUri => new UriBuilder(_infrastructure.RabbitMqUri) { Path = "/" + Uri.EscapeDataString(VirtualHost) }.Uri;

    /// <summary>Points a MassTransit RabbitMQ bus at this virtual host.</summary>
    public void ConfigureHost(IRabbitMqBusFactoryConfigurator configurator)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        configurator.Host(Host, Port, VirtualHost, h =>
        {
            h.Username(Username);
            h.Password(Password);
        });
    }

    /// <summary>Settings in the host's configuration keys (<c>Integration:RabbitMq:*</c>).</summary>
    public IReadOnlyDictionary<string, string?> HostSettings() => new Dictionary<string, string?>
    {
        ["Integration:RabbitMq:Host"] = Host,
        ["Integration:RabbitMq:Port"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Integration:RabbitMq:VirtualHost"] = VirtualHost,
        ["Integration:RabbitMq:Username"] = Username,
        ["Integration:RabbitMq:Password"] = Password,
    };

    /// <summary>Message count of a queue in this vhost, read through the management API (null when the queue does not exist).</summary>
    public async Task<long?> QueueMessageCountAsync(string queue)
    {
        using var response = await _infrastructure.ManagementRequest(HttpMethod.Get,
            $"api/queues/{Uri.EscapeDataString(VirtualHost)}/{Uri.EscapeDataString(queue)}").ConfigureAwait(false);
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound)
            return null;
        response.EnsureSuccessStatusCode();
        using var document = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
        return document.RootElement.TryGetProperty("messages", out var messages) && messages.ValueKind == System.Text.Json.JsonValueKind.Number
            ? messages.GetInt64()
            : 0;
    }

    public async ValueTask DisposeAsync() => await _infrastructure.DeleteVirtualHostAsync(VirtualHost).ConfigureAwait(false);
}
