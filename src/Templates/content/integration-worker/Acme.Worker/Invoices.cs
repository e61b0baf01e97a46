using Integration.Hosting;
using Integration.Operations;
using Integration.Outbox.Model;
using Integration.Sagas.Postgres;
using Integration.Sagas.Scheduling;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Acme.Worker;

/// <summary>A raw JSON payment as a non-.NET client sends it to <c>payments-in</c>.</summary>
public sealed record Payment(string? PaymentId, string? Currency, decimal Amount);

/// <summary>Body of <c>POST /api/invoices</c>.</summary>
public sealed record NewInvoice(decimal Amount);

/// <summary>Published through the outbox when an invoice is stored.</summary>
public sealed record InvoiceCreated(Guid InvoiceId, decimal Amount);

/// <summary>The payment deadline (a durable timeout).</summary>
public sealed record PaymentOverdue(Guid InvoiceId);

/// <summary>An invoice row.</summary>
public sealed class Invoice
{
    /// <summary>Key.</summary>
    public Guid InvoiceId { get; set; }

    /// <summary>Amount due.</summary>
    public decimal Amount { get; set; }

    /// <summary>When it was created.</summary>
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>The invoice saga's state.</summary>
public sealed class InvoiceState : SagaStateMachineInstance
{
    /// <inheritdoc />
    public Guid CorrelationId { get; set; }

    /// <summary>Current state.</summary>
    public string CurrentState { get; set; } = "";

    /// <summary>Amount due.</summary>
    public decimal Amount { get; set; }

    /// <summary>The pending payment deadline.</summary>
    public Guid? OverdueToken { get; set; }
}

/// <summary>Open on <see cref="InvoiceCreated"/>; Overdue when the payment deadline (<c>Invoices:PaymentDue</c>) passes first.</summary>
public sealed class InvoiceStateMachine : MassTransitStateMachine<InvoiceState>
{
    /// <summary>Defines the machine; the deadline comes from configuration.</summary>
    public InvoiceStateMachine(IConfiguration configuration)
    {
        InstanceState(x => x.CurrentState);
        Event(() => Created, e => e.CorrelateById(m => m.Message.InvoiceId));
        Schedule(() => Deadline, x => x.OverdueToken, s =>
        {
            s.Delay = configuration.GetValue("Invoices:PaymentDue", TimeSpan.FromDays(30));
            s.Received = e => e.CorrelateById(m => m.Message.InvoiceId);
        });

        Initially(When(Created)
            .Then(c => c.Saga.Amount = c.Message.Amount)
            .Schedule(Deadline, c => new PaymentOverdue(c.Saga.CorrelationId))
            .TransitionTo(Open));
        During(Open, When(Deadline!.Received).TransitionTo(Overdue));
    }

    /// <summary>Waiting for payment.</summary>
    public State Open { get; private set; } = null!;

    /// <summary>Not paid in time.</summary>
    public State Overdue { get; private set; } = null!;

    /// <summary>The invoice was stored.</summary>
    public Event<InvoiceCreated> Created { get; private set; } = null!;

    /// <summary>The payment deadline.</summary>
    public Schedule<InvoiceState, PaymentOverdue> Deadline { get; private set; } = null!;
}

/// <summary>The worker's database: its own table plus one call per framework library that keeps state.</summary>
public sealed class WorkerDbContext(DbContextOptions<WorkerDbContext> options) : DbContext(options)
{
    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Invoice>(e =>
        {
            e.ToTable("invoices");
            e.HasKey(x => x.InvoiceId);
        });
        modelBuilder.AddIntegrationSagaState<InvoiceState>("invoice_state");
        modelBuilder.AddIntegrationOutbox();
        modelBuilder.AddIntegrationScheduler();
        modelBuilder.AddIntegrationOperations();
    }
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without starting the host.</summary>
public sealed class DesignTimeFactory : DesignTimeDbContextFactory<WorkerDbContext>;
