using System.Text;
using Integration.Testing;
using Microsoft.Playwright;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The dashboard's failed-messages view in headless Chromium against the sample host: failure groups listed, a group
/// retried with its button (after the confirmation), a viewer refused; the screenshot is docs/images/failed-messages.png.
/// </summary>
[TestFixture]
[Category("Integration")]
[Category("Browser")]
public sealed class FailuresDashboard_Specs
{
    ControlProcess _host = null!;
    IPlaywright _playwright = null!;
    IBrowser _browser = null!;

    [SetUp]
    public async Task Start()
    {
        var chromium = Environment.GetEnvironmentVariable("PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH") ?? "/usr/bin/chromium";
        if (!File.Exists(chromium))
            Assert.Fail($"No Chromium at {chromium}: install Debian's chromium (apt-get install -y chromium) or set PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH");
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        _host = await ControlProcess.StartAsync("failures-dashboard");
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

    /// <summary>Parts requests without a request id: the route's validation sends each to <c>parts-requests_error</c>.</summary>
    async Task InvalidPartsRequests(int count)
    {
        await using var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync("device");
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        for (var i = 0; i < count; i++)
        {
            await channel.BasicPublishAsync("", "parts-requests", mandatory: true,
                new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() },
                Encoding.UTF8.GetBytes($$"""{"deviceId":"truck-{{i}}","category":"electronics","sku":"S-1","quantity":2}"""));
        }

        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("parts-requests_error") == count, TimeSpan.FromSeconds(30)),
            Is.True, "the invalid requests never reached the error queue");
    }

    static string RepositoryFile(string relative)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Integration.sln")))
                return Path.Combine(dir.FullName, relative);
        }

        return Path.Combine(TestContext.CurrentContext.WorkDirectory, Path.GetFileName(relative));
    }

    async Task<IPage> OpenWith(string key)
    {
        var page = await _browser.NewPageAsync(new BrowserNewPageOptions { BaseURL = _host.Address.ToString(), ViewportSize = new ViewportSize { Width = 1600, Height = 1000 } });
        await page.GotoAsync("/dashboard");
        await page.FillAsync("#key", key);
        await page.ClickAsync("#save-key");
        await page.WaitForSelectorAsync("body[data-failures-loaded='true']");
        return page;
    }

    [Test]
    public async Task When_an_operator_retries_a_group_should_confirm_then_move_it_and_say_how_many()
    {
        await InvalidPartsRequests(2);
        var page = await OpenWith(ControlHost.OperatorKey);
        var errors = new List<string>();
        page.PageError += (_, error) => errors.Add(error);
        var questions = new List<string>();
        page.Dialog += async (_, dialog) =>
        {
            questions.Add(dialog.Message);
            await dialog.AcceptAsync();
        };

        var group = page.Locator("#failures tr[data-group^='parts-requests_error.']");
        await Assertions.Expect(group).ToHaveCountAsync(1, new() { Timeout = 15_000 });
        await Assertions.Expect(group.Locator("td.n")).ToHaveTextAsync("2");
        var screenshot = RepositoryFile("docs/images/failed-messages.png");
        Directory.CreateDirectory(Path.GetDirectoryName(screenshot)!);
        await page.Locator("#failures-view").ScreenshotAsync(new LocatorScreenshotOptions { Path = screenshot });
        TestContext.AddTestAttachment(screenshot, "failed messages");

        await group.Locator("button[data-action='retry']").ClickAsync();

        await Assertions.Expect(page.Locator("#failures-status")).ToHaveTextAsync("moved 2", new() { Timeout = 15_000 });
        Assert.That(questions, Has.Count.EqualTo(1).And.Some.Contains("Retry 2 message(s)"));
        Assert.That(errors, Is.Empty, "script errors on the page");
    }

    [Test]
    public async Task When_a_viewer_presses_retry_should_show_the_refusal_and_move_nothing()
    {
        await InvalidPartsRequests(1);
        var page = await OpenWith(ControlHost.ViewerKey);
        page.Dialog += async (_, dialog) => await dialog.AcceptAsync();
        var group = page.Locator("#failures tr[data-group^='parts-requests_error.']");
        await Assertions.Expect(group).ToHaveCountAsync(1, new() { Timeout = 15_000 });

        await group.Locator("button[data-action='retry']").ClickAsync();

        await Assertions.Expect(page.Locator("#failures-status")).ToContainTextAsync("may not run 'failures.retry'", new() { Timeout = 15_000 });
        Assert.That(await _host.Broker.QueueMessageCountAsync("parts-requests_error"), Is.EqualTo(1));
    }
}
