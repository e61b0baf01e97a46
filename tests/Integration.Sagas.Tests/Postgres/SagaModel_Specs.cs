using Integration.Sagas.Postgres;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Postgres;

public sealed class ApprovalState : SagaStateMachineInstance
{
    public Guid CorrelationId { get; set; }
    public string CurrentState { get; set; } = "";
    public Guid? ApprovalTimeoutTokenId { get; set; }
    public string IPAddress { get; set; } = "";
    public bool Step2Done { get; set; }
    public string Legacy { get; set; } = "";
}

public sealed class ApprovalDbContext(DbContextOptions<ApprovalDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.AddIntegrationSagaState<ApprovalState>("approvals", e => e.Property(s => s.Legacy).HasColumnName("LegacyColumn"), schema: "orders");
}

/// <summary>The saga state mapping and the repository's registration, without a database.</summary>
[TestFixture]
public sealed class SagaModel_Specs
{
    [Test]
    public void When_a_saga_is_mapped_should_make_every_property_a_snake_case_column_and_keep_explicit_names()
    {
        using var db = new ApprovalDbContext(new DbContextOptionsBuilder<ApprovalDbContext>().UseNpgsql("Host=localhost;Port=1").Options);
        var entity = db.Model.FindEntityType(typeof(ApprovalState))!;

        var columns = entity.GetProperties().ToDictionary(p => p.Name, p => p.GetColumnName());

        Assert.Multiple(() =>
        {
            Assert.That(entity.GetSchema(), Is.EqualTo("orders"));
            Assert.That(entity.GetTableName(), Is.EqualTo("approvals"));
            Assert.That(columns["CorrelationId"], Is.EqualTo("correlation_id"));
            Assert.That(columns["CurrentState"], Is.EqualTo("current_state"));
            Assert.That(columns["ApprovalTimeoutTokenId"], Is.EqualTo("approval_timeout_token_id"));
            Assert.That(columns["IPAddress"], Is.EqualTo("ip_address"));
            Assert.That(columns["Step2Done"], Is.EqualTo("step2_done"));
            Assert.That(columns["Legacy"], Is.EqualTo("LegacyColumn"), "a name set in configure is kept");
            Assert.That(columns[SagaModelBuilderExtensions.RowVersionProperty], Is.EqualTo("xmin"), "the concurrency token stays PostgreSQL's xmin");
        });
    }

    [TestCase(-1, "PostgresRepository<ApprovalDbContext>() for saga ApprovalState: ConflictRetryLimit must be 0 to 1000, not -1")]
    [TestCase(5000, "PostgresRepository<ApprovalDbContext>() for saga ApprovalState: ConflictRetryLimit must be 0 to 1000, not 5000")]
    public void When_a_repository_setting_is_out_of_range_should_throw_naming_the_saga_and_the_setting(int limit, string expected)
    {
        var failure = Assert.Throws<ArgumentException>(() => new ServiceCollection().AddMassTransit(x =>
            x.AddSagaStateMachine<ApprovalMachine, ApprovalState>().PostgresRepository<ApprovalDbContext>(o => o.ConflictRetryLimit = limit)));

        Assert.That(failure!.Message, Does.StartWith(expected));
    }

    [Test]
    public void When_the_repository_is_registered_should_resolve_MassTransit_repositories_over_the_named_DbContext()
    {
        using var provider = new ServiceCollection()
            .AddDbContext<ApprovalDbContext>(o => o.UseNpgsql("Host=localhost;Port=1"))
            .AddMassTransit(x => x.AddSagaStateMachine<ApprovalMachine, ApprovalState>().PostgresRepository<ApprovalDbContext>())
            .BuildServiceProvider();
        using var scope = provider.CreateScope();

        Assert.Multiple(() =>
        {
            Assert.That(scope.ServiceProvider.GetService<MassTransit.Saga.ISagaRepositoryContextFactory<ApprovalState>>(), Is.Not.Null);
            Assert.That(scope.ServiceProvider.GetService<ILoadSagaRepository<ApprovalState>>(), Is.Not.Null);
            Assert.That(scope.ServiceProvider.GetService<IQuerySagaRepository<ApprovalState>>(), Is.Not.Null);
        });
    }
}

public sealed class ApprovalMachine : MassTransitStateMachine<ApprovalState>
{
    public ApprovalMachine()
    {
        InstanceState(x => x.CurrentState);
        Event(() => Requested, e => e.CorrelateById(m => m.Message.Id));
        Initially(When(Requested).TransitionTo(Waiting));
    }

    public State Waiting { get; private set; } = null!;
    public Event<ApprovalRequested> Requested { get; private set; } = null!;
}

public sealed record ApprovalRequested(Guid Id);
