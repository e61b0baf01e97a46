using System.Net;
using System.Net.Http.Json;
using NUnit.Framework;

namespace Integration.Testing.Specs;

/// <summary>The sample host (src/Host) as a user's own host: its Program, its fulfillment saga with a four-hour approval timeout.</summary>
static class SampleHost
{
    public static Task<IntegrationTestHost<Program>> StartAsync(Action<IntegrationTestHostOptions>? configure = null) =>
        IntegrationTestHost<Program>.StartAsync(options =>
        {
            options.NamePrefix = "kit";
            options.Settings["Integration:Probes:Enabled"] = "false";
            options.Settings["Integration:Fulfillment:ApprovalTimeout"] = "04:00:00";
            configure?.Invoke(options);
        });

    /// <summary>POST /api/orders; more than 100 parts need regional approval.</summary>
    public static async Task<Guid> SubmitOrder(this IntegrationTestHost<Program> host, int quantity)
    {
        var orderId = Guid.NewGuid();
        using var response = await host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative), new
        {
            orderId,
            deviceId = "truck-12",
            region = "north",
            lines = new[] { new { sku = "PUMP-1", quantity } },
        });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted), await response.Content.ReadAsStringAsync());
        return orderId;
    }
}
