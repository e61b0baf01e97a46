using Integration.Outbox.Writing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

/// <summary>A DbContext that forgot <c>modelBuilder.AddIntegrationOutbox()</c>.</summary>
public sealed class UnmappedDbContext(DbContextOptions<UnmappedDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.Entity<Widget>().ToTable("widgets");
}

/// <summary><c>AddIntegrationOutbox&lt;TDbContext&gt;()</c> alone: configuration, validation at start, the wake-up interceptor. No broker, no database.</summary>
[TestFixture]
public sealed class OutboxRegistration_Specs
{
    const string NoDatabase = "Host=localhost;Port=1;Database=never_opened";

    static HostApplicationBuilder Builder(Dictionary<string, string?>? settings = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings ?? []);
        builder.Services.AddMassTransit(x => x.UsingInMemory());   // the relay sends through MassTransit
        return builder;
    }

    static string Messages(Exception exception) =>
        string.Join(" | ", exception is AggregateException aggregate ? aggregate.Flatten().InnerExceptions.Select(e => e.Message) : [exception.Message]);

    [Test]
    public void When_the_configuration_section_has_values_should_bind_them_and_let_the_code_override_one()
    {
        var builder = Builder(new()
        {
            ["Integration:Outbox:BatchSize"] = "250",
            ["Integration:Outbox:PollInterval"] = "00:00:05",
            ["Integration:Outbox:RunRelay"] = "false",
        });
        builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(NoDatabase));
        builder.Services.AddIntegrationOutbox<ShopDbContext>(o => o.PollInterval = TimeSpan.FromSeconds(2));
        using var host = builder.Build();

        var options = host.Services.GetRequiredService<IOptions<OutboxOptions>>().Value;

        Assert.Multiple(() =>
        {
            Assert.That(options.BatchSize, Is.EqualTo(250), "Integration:Outbox:BatchSize");
            Assert.That(options.RunRelay, Is.False, "Integration:Outbox:RunRelay");
            Assert.That(options.PollInterval, Is.EqualTo(TimeSpan.FromSeconds(2)), "the code's configure runs after the section is bound");
        });
    }

    [TestCase("BatchSize", "0", "Integration:Outbox:BatchSize must be 1 to 10000, not 0")]
    [TestCase("DeliveryConcurrency", "1000", "Integration:Outbox:DeliveryConcurrency must be 1 to 256, not 1000")]
    [TestCase("LockDuration", "00:00:15", "Integration:Outbox:LockDuration (00:00:15) must be longer than SendTimeout (00:00:15)")]
    [TestCase("PollInterval", "00:00:00", "Integration:Outbox:PollInterval must be positive, not 00:00:00")]
    public void When_a_configured_value_is_invalid_should_fail_start_naming_the_full_key(string key, string value, string expected)
    {
        var builder = Builder(new() { [$"Integration:Outbox:{key}"] = value });
        builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(NoDatabase));
        builder.Services.AddIntegrationOutbox<ShopDbContext>();
        using var host = builder.Build();

        var failure = Assert.CatchAsync(() => host.StartAsync());

        Assert.That(Messages(failure!), Does.Contain(expected));
    }

    [TestCase(false, TestName = "When_AddDbContext_is_called_before_the_outbox_should_add_the_interceptor_to_its_options")]
    [TestCase(true, TestName = "When_AddDbContext_is_called_after_the_outbox_should_add_the_interceptor_to_its_options")]
    public void Interceptor_registration(bool dbContextAfter)
    {
        var builder = Builder();
        if (!dbContextAfter)
            builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(NoDatabase));
        builder.Services.AddIntegrationOutbox<ShopDbContext>();
        if (dbContextAfter)
            builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(NoDatabase));
        using var host = builder.Build();
        using var scope = host.Services.CreateScope();

        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        var interceptors = db.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.Interceptors ?? [];

        Assert.That(interceptors, Has.Exactly(1).SameAs(host.Services.GetRequiredService<OutboxNotifyInterceptor>()));
    }

    [Test]
    public void When_the_DbContext_is_registered_without_AddDbContext_should_fail_start_naming_the_interceptor_to_add()
    {
        var builder = Builder();
        builder.Services.AddScoped(_ => new ShopDbContext(new DbContextOptionsBuilder<ShopDbContext>().UseNpgsql(NoDatabase).Options));
        builder.Services.AddIntegrationOutbox<ShopDbContext>();
        using var host = builder.Build();

        var failure = Assert.CatchAsync(() => host.StartAsync());

        Assert.That(Messages(failure!), Does.Contain("options.AddInterceptors(serviceProvider.GetRequiredService<OutboxNotifyInterceptor>())"));
    }

    [Test]
    public void When_the_model_does_not_map_the_outbox_should_fail_start_naming_the_call()
    {
        var builder = Builder();
        builder.Services.AddDbContext<UnmappedDbContext>(o => o.UseNpgsql(NoDatabase));
        builder.Services.AddIntegrationOutbox<UnmappedDbContext>();
        using var host = builder.Build();

        var failure = Assert.CatchAsync(() => host.StartAsync());

        Assert.That(Messages(failure!), Does.Contain("UnmappedDbContext does not map the outbox tables: call modelBuilder.AddIntegrationOutbox() in its OnModelCreating"));
    }

    [Test]
    public void When_the_tables_are_given_a_schema_should_map_both_there()
    {
        using var db = new ShopDbContext(new DbContextOptionsBuilder<ShopDbContext>().UseNpgsql(NoDatabase)
            .ReplaceService<IModelCacheKeyFactory, SchemaModelCacheKeyFactory>().Options, new OutboxSchema("shop"));

        var tables = new[] { typeof(Model.OutboxMessage), typeof(Inbox.InboxState) }
            .Select(t => db.Model.FindEntityType(t)!).Select(e => $"{e.GetSchema()}.{e.GetTableName()}");

        Assert.That(tables, Is.EqualTo(new[] { "shop.outbox_messages", "shop.inbox_states" }));
    }
}
