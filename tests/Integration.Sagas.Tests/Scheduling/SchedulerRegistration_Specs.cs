using Integration.Sagas.Scheduling;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NUnit.Framework;

namespace Integration.Sagas.Tests.Scheduling;

/// <summary><c>AddIntegrationScheduler()</c> alone: options from configuration, defaults from the service name, validation at start. No broker, no database.</summary>
[TestFixture]
public sealed class SchedulerRegistration_Specs
{
    static IHost Build(Dictionary<string, string?> settings, Action<DurableSchedulerOptions>? configure = null)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ApplicationName = "Shop.OrderWorker", DisableDefaults = true });
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Integration:Scheduler:ConnectionString"] = "Host=localhost;Port=1" }
            .Concat(settings).GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Last().Value));
        builder.Services.AddMassTransit(x =>
        {
            x.AddIntegrationScheduler(configure);
            x.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
        });
        return builder.Build();
    }

    static DurableSchedulerOptions Options(IHost host) => host.Services.GetRequiredService<IOptions<DurableSchedulerOptions>>().Value;

    [Test]
    public void When_nothing_names_the_service_should_name_the_queue_and_scheduler_after_the_application()
    {
        using var host = Build([]);

        Assert.That((Options(host).QueueName, Options(host).SchedulerName), Is.EqualTo(("shop-order-worker-scheduler", "shop-order-worker")),
            "IHostEnvironment.ApplicationName Shop.OrderWorker, kebab-cased");
    }

    [Test]
    public void When_the_host_has_a_service_name_should_name_the_queue_and_scheduler_after_it()
    {
        using var host = Build(new() { ["Integration:Host:ServiceName"] = "parts-desk" });

        Assert.That((Options(host).QueueName, Options(host).SchedulerName), Is.EqualTo(("parts-desk-scheduler", "parts-desk")));
    }

    [Test]
    public void When_the_scheduler_names_its_service_should_win_over_the_host_and_the_application()
    {
        using var host = Build(new() { ["Integration:Host:ServiceName"] = "parts-desk", ["Integration:Scheduler:ServiceName"] = "billing" });

        Assert.That((Options(host).QueueName, Options(host).SchedulerName), Is.EqualTo(("billing-scheduler", "billing")));
    }

    [Test]
    public void When_the_queue_and_scheduler_name_are_set_should_keep_them_and_bind_the_rest_of_the_section()
    {
        using var host = Build(new()
        {
            ["Integration:Scheduler:QueueName"] = "timers",
            ["Integration:Scheduler:MaxConcurrency"] = "4",
            ["Integration:Scheduler:CheckinInterval"] = "00:00:03",
        }, o => o.SchedulerName = "timers-cluster");

        var options = Options(host);
        Assert.Multiple(() =>
        {
            Assert.That(options.QueueName, Is.EqualTo("timers"));
            Assert.That(options.SchedulerName, Is.EqualTo("timers-cluster"));
            Assert.That(options.MaxConcurrency, Is.EqualTo(4));
            Assert.That(options.CheckinInterval, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(options.SchedulerAddress, Is.EqualTo(new Uri("queue:timers")));
        });
    }

    [Test]
    public void When_the_scheduler_names_no_database_should_use_the_applications_connection_string()
    {
        using var host = Build(new() { ["Integration:Scheduler:ConnectionString"] = "", ["Integration:Postgres:ConnectionString"] = "Host=db;Port=5432;Database=app" });

        Assert.That(Options(host).ConnectionString, Is.EqualTo("Host=db;Port=5432;Database=app"));
    }

    [TestCase("MaxConcurrency", "0", "Integration:Scheduler:MaxConcurrency must be 1 to 1000, not 0")]
    [TestCase("CheckinInterval", "00:00:00", "Integration:Scheduler:CheckinInterval must be positive, not 00:00:00")]
    [TestCase("ConnectionString", "", "Integration:Scheduler:ConnectionString is required: set it, Integration:Postgres:ConnectionString or DurableSchedulerOptions.ConnectionStringFactory")]
    public void When_a_configured_value_is_invalid_should_fail_start_naming_the_full_key(string key, string value, string expected)
    {
        using var host = Build(new() { [$"Integration:Scheduler:{key}"] = value });

        var failure = Assert.CatchAsync(() => host.StartAsync());

        Assert.That(Messages(failure!), Does.Contain(expected));
    }

    [Test]
    public void When_no_service_name_can_be_found_should_refuse_the_options_asking_for_one()
    {
        // A bare container: no IHostEnvironment, no Integration:Host:ServiceName.
        using var provider = new ServiceCollection()
            .AddSingleton<IConfiguration>(new ConfigurationBuilder().Build())
            .AddMassTransit(x => x.AddIntegrationScheduler(o => o.ConnectionString = "Host=localhost;Port=1"))
            .BuildServiceProvider();

        var failure = Assert.Throws<OptionsValidationException>(() => _ = provider.GetRequiredService<IOptions<DurableSchedulerOptions>>().Value);

        Assert.That(failure!.Message, Does.Contain("Integration:Scheduler:ServiceName is required"));
    }

    [TestCase("Shop.OrderWorker", "shop-order-worker")]
    [TestCase("Integration.Host", "integration-host")]
    [TestCase("billing_api v2", "billing-api-v2")]
    [TestCase("HTTPGateway", "http-gateway")]
    [TestCase("already-kebab", "already-kebab")]
    public void When_an_application_name_is_kebab_cased(string name, string expected) =>
        Assert.That(DurableSchedulerOptions.KebabCase(name), Is.EqualTo(expected));

    static string Messages(Exception exception)
    {
        var messages = new List<string>();
        for (var current = exception; current is not null; current = current.InnerException)
        {
            messages.Add(current.Message);
            if (current is AggregateException aggregate)
                messages.AddRange(aggregate.Flatten().InnerExceptions.Select(e => e.Message));
        }

        return string.Join(" | ", messages);
    }
}
