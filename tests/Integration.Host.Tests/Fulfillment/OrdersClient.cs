using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Fulfillment;

/// <summary>An order's progress as <c>GET /api/orders/{id}</c> reports it.</summary>
public sealed record OrderView(string Status, IReadOnlyList<string> Steps, string? FailureReason);

/// <summary>Talks to a running host (in-process or a child process) through its HTTP API.</summary>
public sealed class OrdersClient(HttpClient client)
{
    public async Task<Guid> Submit(params (string Sku, int Quantity)[] lines)
    {
        var orderId = Guid.NewGuid();
        using var response = await client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId,
            deviceId = "truck-12",
            region = "north",
            lines = lines.Select(l => new { sku = l.Sku, quantity = l.Quantity }),
        });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted), await response.Content.ReadAsStringAsync());
        return orderId;
    }

    public async Task<OrderView?> Get(Guid orderId)
    {
        using var response = await client.GetAsync(new Uri($"/api/orders/{orderId}", UriKind.Relative));
        if (response.StatusCode == HttpStatusCode.NotFound)
            return null;
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        return new OrderView(
            body.GetProperty("status").GetString()!,
            body.GetProperty("steps").EnumerateArray().Select(s => s.GetString()!).ToList(),
            body.TryGetProperty("failureReason", out var reason) && reason.ValueKind == JsonValueKind.String ? reason.GetString() : null);
    }

    /// <summary>Polls until the order's status is <paramref name="status"/>; fails with the last view otherwise.</summary>
    public async Task<OrderView> WaitFor(Guid orderId, string status, TimeSpan? timeout = null)
    {
        OrderView? last = null;
        var reached = await Eventually.TrueAsync(async () =>
        {
            try
            {
                last = await Get(orderId);
            }
            catch (HttpRequestException)
            {
                return false;
            }

            return last?.Status == status;
        }, timeout ?? TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(200));
        Assert.That(reached, Is.True, () => $"order {orderId} never reached {status}; last seen: {last?.Status} [{string.Join(", ", last?.Steps ?? [])}] {last?.FailureReason}");
        return last!;
    }

    public async Task<HttpStatusCode> Decide(Guid orderId, string decision, object? body = null)
    {
        using var response = await client.PostAsJsonAsync(new Uri($"/api/orders/{orderId}/{decision}", UriKind.Relative), body ?? new { });
        return response.StatusCode;
    }
}
