using Acme.Worker;
using Integration.Hosting;
using Integration.Operations;
using Integration.Outbox;
using Integration.Outbox.Writing;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Routing;
using Integration.Patterns.WireTap;
using Integration.Sagas.Postgres;
using Integration.Sagas.Scheduling;
using MassTransit;

var builder = WebApplication.CreateBuilder(args);

// Broker, database (with its migrations), telemetry, health; every consumer, saga and route below gets its queue.
builder.AddIntegrationDefaults<WorkerDbContext>(bus =>
{
    // A route from a queue: raw JSON payments from any client, tapped to an audit queue and routed by currency.
    bus.AddIntegrationRoutes(routes => routes.From<Payment>("payments-in", r => r
            .WireTap("payments-audit")
            .Route(c => c.ByKey(p => p.Currency)
                .WhenKey("EUR", "payments-eur")
                .Otherwise("payments-other")),
        endpoint => endpoint.RawJson = true));

    // The invoice saga on PostgreSQL; its payment deadline is a durable timeout in the same database.
    bus.AddIntegrationScheduler();
    bus.AddSagaStateMachine<InvoiceStateMachine, InvoiceState>().PostgresRepository<WorkerDbContext>();
});

// The transactional outbox: IOutbox writes messages in your DbContext's transaction, a relay publishes them.
builder.Services.AddIntegrationOutbox<WorkerDbContext>();

// Control bus, dead letters, message store, probes and the dashboard.
builder.AddIntegrationOperations<WorkerDbContext>(operations => operations.AddSagaGauge<InvoiceState>("invoice", s => s.CurrentState));

var app = builder.Build();
app.MapIntegrationDefaults();      // /health/live, /health/ready, /metrics
app.MapIntegrationOperations();    // /api/control/*, /dashboard

// An invoice row and its InvoiceCreated event commit in one transaction; the outbox relay publishes the event.
app.MapPost("/api/invoices", async (NewInvoice request, WorkerDbContext db, IOutbox outbox, CancellationToken cancellationToken) =>
{
    if (request.Amount <= 0)
        return Results.ValidationProblem(new Dictionary<string, string[]> { ["amount"] = ["must be positive"] });
    var invoice = new Invoice { InvoiceId = Guid.NewGuid(), Amount = request.Amount, CreatedAt = DateTimeOffset.UtcNow };
    db.Add(invoice);
    outbox.Publish(new InvoiceCreated(invoice.InvoiceId, invoice.Amount), correlationId: invoice.InvoiceId);
    await db.SaveChangesAsync(cancellationToken);
    return Results.Accepted($"/api/invoices/{invoice.InvoiceId}", new { invoiceId = invoice.InvoiceId });
});

// The saga's state for an invoice: Open until the payment deadline passes, then Overdue.
app.MapGet("/api/invoices/{id:guid}", async (Guid id, WorkerDbContext db, CancellationToken cancellationToken) =>
    await db.FindAsync<InvoiceState>([id], cancellationToken) is { } saga
        ? Results.Ok(new { invoiceId = id, state = saga.CurrentState })
        : Results.NotFound());

await app.RunAsync();

/// <summary>For <c>WebApplicationFactory&lt;Program&gt;</c> in the spec.</summary>
public partial class Program;
