using Integration.Outbox.Batching;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using NUnit.Framework;

namespace Integration.Outbox.Tests.Batching;

[TestFixture]
public sealed class BatchRegistration_Specs
{
    static IHost Build(IDictionary<string, string?> settings, bool outbox = true)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddSingleton(new BatchLog());
        builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql("Host=localhost;Database=unused"));
        if (outbox)
            builder.Services.AddIntegrationOutbox<ShopDbContext>(o => o.RunRelay = false);
        builder.Services.AddMassTransit(x =>
        {
            x.AddIntegrationBatch<ChargeCard, ChargeBatchHandler>(BatchHost.Queue);
            x.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));
        });
        return builder.Build();
    }

    [TestCase("MessageLimit", "0", "Integration:Batching:charge-batches:MessageLimit must be 1 to 1000, not 0")]
    [TestCase("TimeLimit", "00:00:00", "Integration:Batching:charge-batches:TimeLimit must be positive and at most 00:01:00, not 00:00:00")]
    [TestCase("ConcurrencyLimit", "100", "Integration:Batching:charge-batches:ConcurrencyLimit must be 1 to 64, not 100")]
    public void When_a_setting_is_invalid_should_stop_the_host_at_start_naming_the_full_key(string setting, string value, string message)
    {
        using var host = Build(new Dictionary<string, string?> { [$"Integration:Batching:charge-batches:{setting}"] = value });

        var failure = Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.That(failure!.Message, Does.Contain(message));
    }

    [Test]
    public void When_the_settings_are_bound_should_use_them()
    {
        using var host = Build(new Dictionary<string, string?>
        {
            ["Integration:Batching:charge-batches:MessageLimit"] = "250",
            ["Integration:Batching:charge-batches:TimeLimit"] = "00:00:02",
        });

        var options = host.Services.GetRequiredService<IOptionsMonitor<BatchingOptions>>().Get(BatchHost.Queue);

        Assert.That((options.MessageLimit, options.TimeLimit, options.ConcurrencyLimit), Is.EqualTo((250, TimeSpan.FromSeconds(2), 1)));
    }

    [Test]
    public void When_the_same_message_type_is_registered_twice_should_say_so()
    {
        var services = new ServiceCollection();
        var failure = Assert.Throws<InvalidOperationException>(() => services.AddMassTransit(x =>
        {
            x.AddIntegrationBatch<ChargeCard, ChargeBatchHandler>("a");
            x.AddIntegrationBatch<ChargeCard, ChargeBatchHandler>("b");
        }));

        Assert.That(failure!.Message, Does.Contain("a batch endpoint for ChargeCard is already registered"));
    }

    [Test]
    public void When_the_outbox_is_not_registered_should_stop_the_bus_saying_so()
    {
        using var host = Build(new Dictionary<string, string?>(), outbox: false);

        var failure = Assert.CatchAsync(() => host.StartAsync());

        Assert.That(failure!.ToString(), Does.Contain("call services.AddIntegrationOutbox<TDbContext>() too"));
    }
}
