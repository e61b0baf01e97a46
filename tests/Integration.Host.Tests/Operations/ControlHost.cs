using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Operations;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Host.Tests.Operations;

/// <summary>The real host on a test's own vhost and database, with an operator key and a viewer key, ready to take control calls.</summary>
public sealed class ControlHost : IAsyncDisposable
{
    public const string OperatorKey = "operator-key-0123456789";
    public const string ViewerKey = "viewer-key-0123456789ab";

    readonly IntegrationTestHost<Program> _host;

    ControlHost(IntegrationTestHost<Program> host) => _host = host;

    public TestBroker Broker => _host.Broker;
    public TestDatabase Database => _host.Database;
    public HttpClient Client => _host.Client;
    public IServiceProvider Services => _host.Services;

    public static async Task<ControlHost> StartAsync(string prefix, IDictionary<string, string?>? extra = null) =>
        new(await TestHost.StartAsync(prefix, new Dictionary<string, string?>
        {
            ["Integration:ControlBus:ApiKeys:0:Name"] = "ops",
            ["Integration:ControlBus:ApiKeys:0:Key"] = OperatorKey,
            ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
            ["Integration:ControlBus:ApiKeys:1:Name"] = "dashboard",
            ["Integration:ControlBus:ApiKeys:1:Key"] = ViewerKey,
            ["Integration:ControlBus:ApiKeys:1:Role"] = "Viewer",
        }.Concat(extra ?? new Dictionary<string, string?>()).ToDictionary(kv => kv.Key, kv => kv.Value)));

    /// <summary>Sends a control call; returns the status and the JSON body.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, string path, string? key, object? body = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (key is not null)
            request.Headers.Add("X-Api-Key", key);
        if (body is not null)
            request.Content = JsonContent.Create(body);
        using var response = await Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The audit log, newest first.</summary>
    public async Task<List<ControlAuditRecord>> Audit() =>
        (await Services.GetRequiredService<ControlAuditLog>().ReadAsync(100, CancellationToken.None)).ToList();

    /// <summary>Connects an extra receive endpoint to the host's bus at run time.</summary>
    public async Task<HostReceiveEndpointHandle> ConnectEndpoint(string queue, Action<IReceiveEndpointConfigurator> configure)
    {
        var handle = Services.GetRequiredService<IBus>().ConnectReceiveEndpoint(queue, configure);
        await handle.Ready;
        return handle;
    }

    /// <summary>Sends <paramref name="message"/> to <paramref name="queue"/> through the host's bus.</summary>
    public async Task SendTo<T>(string queue, T message)
        where T : class =>
        await (await Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri($"queue:{queue}"))).Send(message);

    public ValueTask DisposeAsync() => _host.DisposeAsync();
}
