using System.Net;
using System.Text;
using Integration.Testing;
using Microsoft.Playwright;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The dashboard in headless Chromium (Debian's <c>chromium</c>, driven by Playwright) against a running host with
/// traffic: the route diagram, the counts, the journeys; screenshots are attached to the test's results.
/// </summary>
[TestFixture]
[Category("Integration")]
[Category("Browser")]
public sealed class Dashboard_Specs
{
    ControlProcess _host = null!;
    IPlaywright _playwright = null!;
    IBrowser _browser = null!;

    static string ChromiumPath()
    {
        var path = Environment.GetEnvironmentVariable("PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH") ?? "/usr/bin/chromium";
        if (!File.Exists(path))
            Assert.Fail($"No Chromium at {path}: install Debian's chromium (apt-get install -y chromium; ./test.sh does it) or set PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH");
        return path;
    }

    [SetUp]
    public async Task Start()
    {
        var chromium = ChromiumPath();
        _playwright = await Playwright.CreateAsync();
        try
        {
            _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = chromium,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            });
        }
        catch (PlaywrightException exception)
        {
            Assert.Fail($"Chromium at {chromium} could not start: {exception.Message}");
        }

        _host = await ControlProcess.StartAsync("dashboard", new Dictionary<string, string?>
        {
            ["Integration:Probes:Enabled"] = "true",
            ["Integration:Probes:IntervalSeconds"] = "2",
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

    async Task Traffic()
    {
        await using var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        async Task Publish(string body) => await channel.BasicPublishAsync("", "parts-requests", mandatory: true,
            new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() }, Encoding.UTF8.GetBytes(body));
        foreach (var category in new[] { "electronics", "hydraulics", "brakes", "electronics" })
            await Publish($$"""{"requestId":"{{Guid.NewGuid()}}","deviceId":"truck-3","category":"{{category}}","sku":"S-1","quantity":2}""");
        await Publish("""{"deviceId":"truck-3","category":"electronics","sku":"S-1","quantity":2}""");
        for (var i = 0; i < 3; i++)
            await _host.SubmitOrder(quantity: i + 1);
        using var stock = await _host.Client.GetAsync(new Uri("/api/stock/SKU-1", UriKind.Relative));
        Assert.That(stock.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            var (_, body) = await _host.Send(HttpMethod.Get, "/api/control/messages?take=100", ControlHost.ViewerKey);
            return body.GetProperty("data").GetArrayLength() >= 8;
        }, TimeSpan.FromSeconds(30)), Is.True, "the traffic never reached the message store");
    }

    async Task Screenshot(IPage page, string name)
    {
        var path = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"{name}-{DateTime.UtcNow:HHmmss}.png");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        TestContext.AddTestAttachment(path, name);
    }

    [Test]
    public async Task When_an_operator_opens_the_dashboard_should_draw_the_routes_and_show_the_counts()
    {
        await Traffic();
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { BaseURL = _host.Address.ToString(), ViewportSize = new ViewportSize { Width = 1600, Height = 1200 } });
        var failures = new List<string>();
        page.PageError += (_, error) => failures.Add(error);

        var index = await page.GotoAsync("/");
        Assert.That(index!.Status, Is.EqualTo(200));
        await page.ClickAsync("a[href='/dashboard']");
        await page.WaitForURLAsync("**/dashboard");
        Assert.That(await page.TextContentAsync("#status"), Is.EqualTo("no key"));
        await Screenshot(page, "dashboard-without-key");

        await page.FillAsync("#key", "not-the-right-key-at-all");
        await page.ClickAsync("#save-key");
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("key is required");

        await page.FillAsync("#key", ControlHost.ViewerKey);
        await page.ClickAsync("#save-key");
        await page.WaitForSelectorAsync("body[data-loaded='true']");
        await page.WaitForSelectorAsync("#topology svg g.route[data-route='parts-requests']");
        await Assertions.Expect(page.Locator("#sagas tbody tr td").First).Not.ToHaveTextAsync("No saga instances");
        await Assertions.Expect(page.Locator("#dead-letters tr[data-queue='parts-requests_error'] td.n")).ToHaveTextAsync("1", new() { Timeout = 15_000 });
        await Assertions.Expect(page.Locator("#probes tbody tr td.ok")).ToHaveCountAsync(1, new() { Timeout = 15_000 });

        var route = page.Locator("#topology g.route[data-route='parts-requests']");
        var nodes = await route.Locator("g[data-node] text").AllTextContentsAsync();
        Assert.Multiple(async () =>
        {
            Assert.That(nodes, Is.SupersetOf(new[]
            {
                "parts-requests", "wiretap:audit", "validate", "filter:parts-requests-discarded", "route:by-category",
                "audit", "parts-requests_error", "parts-requests-discarded", "parts-electronics", "parts-hydraulics", "parts-general",
            }), "the route diagram");
            Assert.That(long.TryParse(await page.TextContentAsync("#outbox-backlog"), out _), Is.True, "outbox backlog is a count");
            Assert.That(long.Parse(await page.TextContentAsync("#stored-messages") ?? "0", System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(8));
            Assert.That(await page.Locator("#dead-letter-total").TextContentAsync(), Is.EqualTo("1"));
            Assert.That(await page.Locator("#rates tbody tr").CountAsync(), Is.GreaterThan(5), "live rates per queue");
            Assert.That(await page.Locator("#journeys li[data-conversation]").CountAsync(), Is.GreaterThanOrEqualTo(3), "recent journeys");
            Assert.That(await page.Locator("#journeys").TextContentAsync(), Does.Contain("Integration.Host.Contracts:OrderSubmitted").And.Contain("parts-electronics"));
            Assert.That(await page.Locator("#breakers tbody").TextContentAsync(), Does.Contain("stock-levels").And.Contain("Closed"));
            Assert.That(failures, Is.Empty, "script errors on the page");
        });
        await Screenshot(page, "dashboard");

        // An operator replays the dead letter from the page (the route rejects it again: it comes back to the error queue).
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        await page.FillAsync("#key", ControlHost.OperatorKey);
        await page.ClickAsync("#save-key");
        await page.ClickAsync("#dead-letters button[data-replay='parts-requests_error']");
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("replayed parts-requests_error", new() { Timeout = 15_000 });
        Assert.That(await Eventually.TrueAsync(async () =>
        {
            var (_, audit) = await _host.Send(HttpMethod.Get, "/api/control/audit?take=200", ControlHost.ViewerKey);
            return audit.GetProperty("data").EnumerateArray().Any(a => a.GetProperty("action").GetString() == "dead-letters.replay"
                && a.GetProperty("actor").GetString() == "ops" && a.GetProperty("outcome").GetString() == "ok");
        }, TimeSpan.FromSeconds(15)), Is.True, "the replay button ran an audited replay");
        await Screenshot(page, "dashboard-after-replay");
    }
}
