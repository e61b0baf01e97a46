using System.Net;
using System.Net.Http.Json;
using System.Text;
using Integration.Testing;
using Microsoft.Playwright;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The dashboard's live graph and saga views in headless Chromium against a running host with traffic: the graph's
/// counts, a node's recent messages, a compensated order's timeline and a repair from the page. Screenshots go to
/// <c>docs/images/</c> (referenced from docs/operations.md) and to the test's results.
/// </summary>
[TestFixture]
[Category("Integration")]
[Category("Browser")]
public sealed class SagaDashboard_Specs
{
    ControlProcess _host = null!;
    IPlaywright _playwright = null!;
    IBrowser _browser = null!;

    [SetUp]
    public async Task Start()
    {
        var chromium = Environment.GetEnvironmentVariable("PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH") ?? "/usr/bin/chromium";
        if (!File.Exists(chromium))
            Assert.Fail($"No Chromium at {chromium}: install Debian's chromium (apt-get install -y chromium; ./test.sh does it) or set PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH");
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        _host = await ControlProcess.StartAsync("sagadash", new Dictionary<string, string?>
        {
            ["Integration:Fulfillment:ApprovalQuantityLimit"] = "100",
            ["Integration:Fulfillment:ApprovalTimeout"] = "01:00:00",
            ["Integration:Operations:Sagas:StuckAfterMinutes"] = "0.01",
        });
    }

    [TearDown]
    public async Task Stop()
    {
        if (_host is not null)
            await _host.DisposeAsync();
        if (_browser is not null)
            await _browser.DisposeAsync();
        _playwright?.Dispose();
    }

    static string Images()
    {
        var directory = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Integration.sln")))
            directory = directory.Parent;
        var images = Path.Combine(directory?.FullName ?? TestContext.CurrentContext.WorkDirectory, "docs", "images");
        Directory.CreateDirectory(images);
        return images;
    }

    static async Task Screenshot(ILocator section, string name)
    {
        var path = Path.Combine(Images(), name + ".png");
        await section.ScreenshotAsync(new LocatorScreenshotOptions { Path = path });
        TestContext.AddTestAttachment(path, name);
    }

    async Task<Guid> Order(string sku, int quantity)
    {
        var orderId = Guid.NewGuid();
        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative),
            new { orderId, deviceId = "truck-7", region = "north", lines = new[] { new { sku, quantity } } });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        return orderId;
    }

    async Task WaitForState(Guid orderId, string state) =>
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            var (status, body) = await _host.Send(HttpMethod.Get, $"/api/control/sagas/order-fulfillment/{orderId}", ControlHost.ViewerKey);
            return status == HttpStatusCode.OK && body.GetProperty("state").GetString() == state
                && (state != "AwaitingApproval" || body.GetProperty("pendingTimeouts").GetArrayLength() == 1);
        }, TimeSpan.FromSeconds(30)), Is.True, $"order {orderId} never reached {state}");

    [Test]
    public async Task When_an_operator_inspects_the_graph_and_a_saga_should_show_counts_timeline_and_repair_it()
    {
        await using (var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device"))
        await using (var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true)))
        {
            foreach (var category in new[] { "electronics", "hydraulics", "brakes", "electronics" })
            {
                await channel.BasicPublishAsync("", "parts-requests", mandatory: true,
                    new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() },
                    Encoding.UTF8.GetBytes($$"""{"requestId":"{{Guid.NewGuid()}}","deviceId":"truck-3","category":"{{category}}","sku":"S-1","quantity":2}"""));
            }
        }

        var compensated = await Order("FAIL-INVENTORY-9", 3);
        var waiting = await Order("SKU-1", 150);
        await Order("SKU-1", 1);
        await WaitForState(compensated, "Failed");
        await WaitForState(waiting, "AwaitingApproval");

        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { BaseURL = _host.Address.ToString(), ViewportSize = new ViewportSize { Width = 1600, Height = 1400 } });
        var failures = new List<string>();
        page.PageError += (_, error) => failures.Add(error);
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await page.GotoAsync("/dashboard");
        await page.FillAsync("#key", ControlHost.OperatorKey);
        await page.ClickAsync("#save-key");
        await page.WaitForSelectorAsync("body[data-graph-loaded='true']");

        // The graph: counts as sent, refreshed live.
        await Assertions.Expect(page.Locator("#graph g.node[data-id='queue:parts-electronics']")).ToHaveAttributeAsync("data-count", "2", new() { Timeout = 20_000 });
        await Assertions.Expect(page.Locator("#graph g.node[data-id='route:parts-requests']")).ToHaveAttributeAsync("data-count", "4");
        await Assertions.Expect(page.Locator("#graph g.node[data-id='queue:parts-hydraulics']")).ToHaveAttributeAsync("data-count", "1");
        Assert.That(await page.Locator("#graph g.node.state").CountAsync(), Is.GreaterThanOrEqualTo(8), "the fulfillment machine's states");

        // A node's recent messages, from the message store.
        await page.ClickAsync("#graph g.node[data-id='queue:parts-electronics']");
        await Assertions.Expect(page.Locator("#graph-messages tbody tr")).ToHaveCountAsync(2, new() { Timeout = 15_000 });
        await Screenshot(page.Locator("#graph-section"), "dashboard-graph");

        // Saga list → the compensated order's timeline.
        await page.SelectOptionAsync("#saga-filter", "order-fulfillment");
        await page.ClickAsync("#saga-search");
        await page.ClickAsync($"#saga-instances tr[data-id='{compensated}']");
        await Assertions.Expect(page.Locator("#saga-timeline tbody tr")).ToHaveCountAsync(6);
        var events = await page.Locator("#saga-timeline tbody tr td:nth-child(2)").AllTextContentsAsync();
        Assert.That(events, Is.EqualTo(new[] { "Submitted", "Reserved", "PurchaseOrderCreated", "InventoryUpdateFailed", "PurchaseOrderCancelled", "Released" }));
        await Screenshot(page.Locator("#saga-section"), "dashboard-saga-timeline");

        // The waiting order is stuck (0.01 minutes): fire its timeout from the page.
        await page.CheckAsync("#saga-stuck");
        await page.ClickAsync("#saga-search");
        await page.ClickAsync($"#saga-instances tr.stuck[data-id='{waiting}']");
        await Assertions.Expect(page.Locator("#saga-timeouts button[data-repair='timeouts/fire']")).ToHaveCountAsync(1);
        await Screenshot(page.Locator("#saga-section"), "dashboard-saga-stuck");
        await page.ClickAsync("#saga-timeouts button[data-repair='timeouts/fire']");
        await Assertions.Expect(page.Locator("#saga-status")).ToContainTextAsync("fired ApprovalTimedOut");
        await WaitForState(waiting, "Failed");

        var (_, audit) = await _host.Send(HttpMethod.Get, "/api/control/audit?take=100", ControlHost.ViewerKey);
        Assert.That(audit.GetProperty("data").EnumerateArray().Any(a => a.GetProperty("action").GetString() == "saga.timeout.fire"
            && a.GetProperty("actor").GetString() == "ops" && a.GetProperty("outcome").GetString() == "ok"), Is.True, "the button ran an audited repair");
        Assert.That(failures, Is.Empty, "script errors on the page");
    }
}
