using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integration.Testing;
using Integration.Testing.NUnit;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Acme.Worker.Tests;

/// <summary>Stops the shared test infrastructure (Testcontainers, when it started any) after the last spec.</summary>
[SetUpFixture]
public sealed class IntegrationSetUp : IntegrationSetUpFixture;

/// <summary>
/// The worker host in process, on a virtual host and a database of its own (IntegrationKit.Testing), against a real
/// RabbitMQ and PostgreSQL: INTEGRATION_RABBITMQ_URI, INTEGRATION_RABBITMQ_MANAGEMENT_URI and INTEGRATION_POSTGRES when set
/// (the error names them when neither they nor Docker for Testcontainers are there).
/// </summary>
[TestFixture, Category("Integration"), NonParallelizable]
public sealed class Worker_Specs
{
    const string Key = "spec-operator-key-0123456789";
    IntegrationTestHost<Program> _host = null!;

    [OneTimeSetUp]
    public async Task Start() => _host = await IntegrationTestHost<Program>.StartAsync(o =>
    {
        o.Settings["Integration:ControlBus:ApiKeys:0:Name"] = "spec";
        o.Settings["Integration:ControlBus:ApiKeys:0:Key"] = Key;
        o.Settings["Integration:ControlBus:ApiKeys:0:Role"] = "Operator";
    });

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (_host is not null)
            await _host.DisposeAsync();
    }

    [Test]
    public async Task When_an_invoice_is_not_paid_in_thirty_days_should_become_overdue()
    {
        using var response = await _host.Client.PostAsJsonAsync(new Uri("/api/invoices", UriKind.Relative), new { amount = 120.5m });
        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("invoiceId").GetGuid();

        // InvoiceCreated left through the outbox and opened the saga; its thirty-day deadline is fired now.
        await _host.Outbox.WaitUntilDeliveredAsync();
        var invoices = _host.Saga<InvoiceState>();
        await invoices.WaitForStateAsync(id, "Open");
        await _host.Timeouts.FireNowAsync<PaymentOverdue>();
        var overdue = await invoices.WaitForStateAsync(id, "Overdue");

        Assert.That(overdue.Amount, Is.EqualTo(120.5m));
    }

    [Test]
    public async Task When_a_non_dotnet_client_sends_a_payment_should_route_it_by_currency_and_tap_it()
    {
        await using var connection = await new ConnectionFactory { Uri = _host.Broker.AmqpUri }.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        foreach (var queue in new[] { "payments-eur", "payments-other", "payments-audit" })
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        var body = Encoding.UTF8.GetBytes("""{"paymentId":"p-1","currency":"EUR","amount":120.5}""");
        await channel.BasicPublishAsync("", "payments-in", mandatory: true,
            new BasicProperties { ContentType = "application/json", MessageId = Guid.NewGuid().ToString() }, body);

        BasicGetResult? routed = null, tapped = null;
        var arrived = await Eventually.TrueAsync(async () =>
        {
            routed ??= await channel.BasicGetAsync("payments-eur", autoAck: true);
            tapped ??= await channel.BasicGetAsync("payments-audit", autoAck: true);
            return routed is not null && tapped is not null;
        }, TimeSpan.FromSeconds(30));

        Assert.That(arrived, Is.True, $"the payment did not reach payments-eur ({routed is not null}) and payments-audit ({tapped is not null})");
        Assert.That(routed!.Body.ToArray(), Is.EqualTo(body), "a raw route passes the bytes on as they came");
    }

    [Test]
    public async Task When_an_operator_opens_operations_should_serve_the_dashboard_and_the_control_api()
    {
        using var dashboard = await _host.Client.GetAsync(new Uri("/dashboard", UriKind.Relative));
        Assert.That(dashboard.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(dashboard.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));

        using var anonymous = await _host.Client.GetAsync(new Uri("/api/control/routes", UriKind.Relative));
        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));

        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("/api/control/routes", UriKind.Relative));
        request.Headers.Add("X-Api-Key", Key);
        using var routes = await _host.Client.SendAsync(request);
        Assert.That(routes.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await routes.Content.ReadAsStringAsync(), Does.Contain("payments-in"));
    }
}
