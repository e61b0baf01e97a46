using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The host as its own process on a real port (for a browser, and for MassTransit's meter, which binds to the first host
/// of a process), on a test's own vhost and database, with the operator and viewer keys of <see cref="ControlHost"/>.
/// </summary>
public sealed class ControlProcess : IAsyncDisposable
{
    ControlProcess(TestBroker broker, TestDatabase database, HostProcess process)
    {
        Broker = broker;
        Database = database;
        Process = process;
    }

    public TestBroker Broker { get; }
    public TestDatabase Database { get; }
    public HostProcess Process { get; }
    public HttpClient Client => Process.Client;
    public Uri Address => Process.Address;

    public static async Task<ControlProcess> StartAsync(string prefix, IDictionary<string, string?>? extra = null)
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        var broker = await infrastructure.CreateVirtualHostAsync(prefix);
        var database = await infrastructure.CreateDatabaseAsync(prefix);
        var settings = new Dictionary<string, string?>(broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            // Test messages would add traffic the specs do not expect; specs that want them turn them on.
            ["Integration:Probes:Enabled"] = "false",
            ["Integration:ControlBus:ApiKeys:0:Name"] = "ops",
            ["Integration:ControlBus:ApiKeys:0:Key"] = ControlHost.OperatorKey,
            ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
            ["Integration:ControlBus:ApiKeys:1:Name"] = "dashboard",
            ["Integration:ControlBus:ApiKeys:1:Key"] = ControlHost.ViewerKey,
            ["Integration:ControlBus:ApiKeys:1:Role"] = "Viewer",
            ["Integration:Operations:RefreshSeconds"] = "1",
        };
        foreach (var (key, value) in extra ?? new Dictionary<string, string?>())
            settings[key] = value;
        var process = await HostProcess.StartAsync("Integration.Host.dll", settings);
        var host = new ControlProcess(broker, database, process);
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            using var response = await host.Client.GetAsync(new Uri("/health/ready", UriKind.Relative));
            return response.IsSuccessStatusCode;
        }, TimeSpan.FromSeconds(30)), Is.True, "host never became ready");
        return host;
    }

    /// <summary>Submits an order; returns its id.</summary>
    public async Task<Guid> SubmitOrder(int quantity = 1)
    {
        var orderId = Guid.NewGuid();
        using var response = await Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative),
            new { orderId, deviceId = "truck-7", region = "north", lines = new[] { new { sku = "SKU-1", quantity } } });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        return orderId;
    }

    /// <summary>Sends a control call with <paramref name="key"/>; returns the status and the JSON body.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, string path, string? key)
    {
        using var request = new HttpRequestMessage(method, new Uri(path, UriKind.Relative));
        if (key is not null)
            request.Headers.Add("X-Api-Key", key);
        using var response = await Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public async ValueTask DisposeAsync()
    {
        await Process.DisposeAsync();
        await Broker.DisposeAsync();
        await Database.DisposeAsync();
    }
}
