using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Npgsql;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Acme.Worker.Tests;

/// <summary>
/// The worker host started in process (<see cref="WebApplicationFactory{TEntryPoint}"/>) against a real RabbitMQ and
/// PostgreSQL named by INTEGRATION_RABBITMQ_URI, INTEGRATION_RABBITMQ_MANAGEMENT_URI and INTEGRATION_POSTGRES, on a
/// virtual host and a database of its own (created here, deleted afterwards).
/// </summary>
[TestFixture, Category("Integration"), NonParallelizable]
public sealed class Worker_Specs
{
    const string Key = "spec-operator-key-0123456789";
    string _vhost = "";
    string _database = "";
    WebApplicationFactory<Program> _factory = null!;
    HttpClient _client = null!;
    Uri _amqp = null!;

    /// <summary>The services this spec runs against, with the values for a local RabbitMQ and PostgreSQL.</summary>
    static readonly (string Name, string Example)[] Services =
    [
        ("INTEGRATION_RABBITMQ_URI", "amqp://guest:guest@localhost:5672/"),
        ("INTEGRATION_RABBITMQ_MANAGEMENT_URI", "http://localhost:15672/"),
        ("INTEGRATION_POSTGRES", "Host=localhost;Port=5432;Username=postgres;Password=postgres;Database=postgres"),
    ];

    static string Required(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
        ? value
        : throw new InvalidOperationException($"{name} is not set (see README.md)");

    [OneTimeSetUp]
    public async Task Start()
    {
        var missing = Services.Where(s => string.IsNullOrEmpty(Environment.GetEnvironmentVariable(s.Name))).ToArray();
        if (missing.Length > 0)
        {
            Assert.Fail(
                $"{string.Join(", ", missing.Select(s => s.Name))} not set: this spec runs the worker against a real RabbitMQ (with the " +
                "management plugin) and PostgreSQL, on a virtual host and a database of its own. For local services:" +
                string.Concat(missing.Select(s => $"{Environment.NewLine}  export {s.Name}='{s.Example}'")));
        }

        var suffix = Guid.NewGuid().ToString("N")[..12];
        _vhost = $"acme-worker-{suffix}";
        _database = $"acme_worker_{suffix}";
        var rabbit = new Uri(Required("INTEGRATION_RABBITMQ_URI"));
        var user = Uri.UnescapeDataString(rabbit.UserInfo.Split(':')[0]);
        var password = Uri.UnescapeDataString(rabbit.UserInfo.Split(':')[1]);
        using (var management = Management())
        {
            (await management.PutAsync($"api/vhosts/{_vhost}", null)).EnsureSuccessStatusCode();
            (await management.PutAsJsonAsync($"api/permissions/{_vhost}/{Uri.EscapeDataString(user)}", new { configure = ".*", write = ".*", read = ".*" })).EnsureSuccessStatusCode();
        }

        var postgres = new NpgsqlConnectionStringBuilder(Required("INTEGRATION_POSTGRES"));
        await using (var connection = new NpgsqlConnection(postgres.ConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{_database}\"", connection);
            await create.ExecuteNonQueryAsync();
        }

        postgres.Database = _database;
        _amqp = new UriBuilder(rabbit) { Path = "/" + Uri.EscapeDataString(_vhost) }.Uri;
        var settings = new Dictionary<string, string?>
        {
            ["Integration:RabbitMq:Host"] = rabbit.Host,
            ["Integration:RabbitMq:Port"] = rabbit.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Integration:RabbitMq:VirtualHost"] = _vhost,
            ["Integration:RabbitMq:Username"] = user,
            ["Integration:RabbitMq:Password"] = password,
            ["Integration:RabbitMq:ManagementUri"] = Required("INTEGRATION_RABBITMQ_MANAGEMENT_URI"),
            ["Integration:Postgres:ConnectionString"] = postgres.ConnectionString,
            ["Integration:ControlBus:ApiKeys:0:Name"] = "spec",
            ["Integration:ControlBus:ApiKeys:0:Key"] = Key,
            ["Integration:ControlBus:ApiKeys:0:Role"] = "Operator",
            ["Invoices:PaymentDue"] = "00:00:02",
        };
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(host =>
        {
            foreach (var (key, value) in settings)
                host.UseSetting(key, value);
        });
        _client = _factory.CreateClient();
        await Until(async () => (await _client.GetAsync(new Uri("/health/ready", UriKind.Relative))).IsSuccessStatusCode, "the worker never became ready");
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (_database.Length == 0)
            return; // never started
        _client?.Dispose();
        if (_factory is not null)
            await _factory.DisposeAsync();
        using (var management = Management())
            await management.DeleteAsync($"api/vhosts/{_vhost}");
        await using var connection = new NpgsqlConnection(Required("INTEGRATION_POSTGRES"));
        await connection.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{_database}\" WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync();
    }

    [Test]
    public async Task When_an_invoice_is_posted_should_publish_through_the_outbox_and_time_out_in_the_saga()
    {
        using var response = await _client.PostAsJsonAsync(new Uri("/api/invoices", UriKind.Relative), new { amount = 120.5m });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("invoiceId").GetGuid();

        // InvoiceCreated left through the outbox and started the saga; its durable 2 s deadline then fired.
        await Until(async () => await State(id) == "Overdue", $"invoice {id} never became Overdue (last state: {await State(id)})");
    }

    [Test]
    public async Task When_a_non_dotnet_client_sends_a_payment_should_route_it_by_currency_and_tap_it()
    {
        var factory = new ConnectionFactory { Uri = _amqp };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        foreach (var queue in new[] { "payments-eur", "payments-other", "payments-audit" })
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        var body = Encoding.UTF8.GetBytes("""{"paymentId":"p-1","currency":"EUR","amount":120.5}""");
        await channel.BasicPublishAsync("", "payments-in", mandatory: true, new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() }, body);

        BasicGetResult? routed = null, tapped = null;
        await Until(async () =>
        {
            routed ??= await channel.BasicGetAsync("payments-eur", autoAck: true);
            tapped ??= await channel.BasicGetAsync("payments-audit", autoAck: true);
            return routed is not null && tapped is not null;
        }, "the payment did not reach payments-eur and payments-audit");
        Assert.That(Encoding.UTF8.GetString(routed!.Body.Span), Does.Contain("p-1"));
    }

    [Test]
    public async Task When_an_operator_opens_operations_should_serve_the_dashboard_and_the_control_api()
    {
        using var dashboard = await _client.GetAsync(new Uri("/dashboard", UriKind.Relative));
        Assert.That(dashboard.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(dashboard.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));

        using var anonymous = await _client.GetAsync(new Uri("/api/control/routes", UriKind.Relative));
        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("/api/control/routes", UriKind.Relative));
        request.Headers.Add("X-Api-Key", Key);
        using var routes = await _client.SendAsync(request);
        Assert.That(routes.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await routes.Content.ReadAsStringAsync(), Does.Contain("payments-in"));
    }

    async Task<string?> State(Guid id)
    {
        using var response = await _client.GetAsync(new Uri($"/api/invoices/{id}", UriKind.Relative));
        return response.IsSuccessStatusCode ? (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("state").GetString() : null;
    }

    static HttpClient Management()
    {
        var uri = new Uri(Required("INTEGRATION_RABBITMQ_MANAGEMENT_URI"));
        var amqp = new Uri(Required("INTEGRATION_RABBITMQ_URI"));
        var client = new HttpClient { BaseAddress = uri };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.UnescapeDataString(amqp.UserInfo))));
        return client;
    }

    /// <summary>Polls <paramref name="condition"/> for up to 60 s; fails with <paramref name="failure"/>.</summary>
    static async Task Until(Func<Task<bool>> condition, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition())
                    return;
            }
            catch (HttpRequestException)
            {
                // not up yet
            }

            await Task.Delay(200);
        }

        Assert.Fail(failure);
    }
}
