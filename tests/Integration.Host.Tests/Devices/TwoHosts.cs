using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Testing;

namespace Integration.Host.Tests.Devices;

/// <summary>
/// Two instances of the real host on one virtual host and one database, as two machines of one service would run:
/// <see cref="A"/> owns the vhost and the database; <see cref="B"/> is pointed at them.
/// </summary>
public sealed class TwoHosts : IAsyncDisposable
{
    public const string ViewerKey = "viewer-key-0123456789ab";

    static readonly Dictionary<string, string?> Keys = new()
    {
        ["Integration:ControlBus:ApiKeys:0:Name"] = "dashboard",
        ["Integration:ControlBus:ApiKeys:0:Key"] = ViewerKey,
        ["Integration:ControlBus:ApiKeys:0:Role"] = "Viewer",
    };

    TwoHosts(IntegrationTestHost<Program> a, IntegrationTestHost<Program> b)
    {
        A = a;
        B = b;
    }

    public IntegrationTestHost<Program> A { get; }

    public IntegrationTestHost<Program> B { get; }

    public static async Task<TwoHosts> StartAsync(string prefix)
    {
        var a = await TestHost.StartAsync(prefix + "a", Keys);
        try
        {
            var shared = new Dictionary<string, string?>(Keys)
            {
                ["Integration:RabbitMq:VirtualHost"] = a.Broker.VirtualHost,
                ["Integration:Postgres:ConnectionString"] = a.Database.ConnectionString,
            };
            return new TwoHosts(a, await TestHost.StartAsync(prefix + "b", shared));
        }
        catch
        {
            await a.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a control command on <paramref name="host"/> over HTTP; returns its <c>data</c>.</summary>
    public static async Task<JsonElement> Control(IntegrationTestHost<Program> host, string action)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("/api/control/commands", UriKind.Relative))
        {
            Content = JsonContent.Create(new { action }),
        };
        request.Headers.Add("X-Api-Key", ViewerKey);
        using var response = await host.Client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK)
            throw new InvalidOperationException($"{action}: {(int)response.StatusCode} {body}");
        return JsonDocument.Parse(body).RootElement.GetProperty("data").Clone();
    }

    /// <summary>Posts a one-line order for <paramref name="deviceId"/> to <paramref name="host"/>; returns its id.</summary>
    public static async Task<Guid> SubmitOrder(IntegrationTestHost<Program> host, string deviceId)
    {
        var orderId = Guid.NewGuid();
        using var response = await host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId,
            deviceId,
            region = "north",
            lines = new[] { new { sku = "PUMP-1", quantity = 2 } },
        });
        if (response.StatusCode != HttpStatusCode.Accepted)
            throw new InvalidOperationException($"POST /api/orders: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return orderId;
    }

    public async ValueTask DisposeAsync()
    {
        await B.DisposeAsync();
        await A.DisposeAsync();
    }
}
