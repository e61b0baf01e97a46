using Integration.Host.Configuration;
using Integration.Host.Features;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Integration.Host.Operations;

/// <summary>The control bus: authorized, audited commands over HTTP (<c>/api/control</c>) and over RabbitMQ.</summary>
public sealed class OperationsFeature : IHostFeature
{
    static readonly string InstanceId = Guid.NewGuid().ToString("N")[..8];

    /// <inheritdoc />
    public string Name => "operations";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddValidatedOptions<ControlBusOptions>(ControlBusOptions.Section, o =>
        {
            var duplicate = o.ApiKeys.GroupBy(k => k.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null)
                return $"{ControlBusOptions.Section}:ApiKeys: the name '{duplicate.Key}' is used by more than one key";
            var weak = o.ApiKeys.Select((k, i) => (k, i)).FirstOrDefault(x => x.k.Key.Length < 16 || string.IsNullOrWhiteSpace(x.k.Name));
            return weak.k is null ? null : $"{ControlBusOptions.Section}:ApiKeys:{weak.i}: a key needs a Name and a Key of at least 16 characters";
        });

        var overrides = new LogLevelOverrides();
        ((IConfigurationBuilder)builder.Configuration).Add(overrides);
        builder.Services.AddSingleton(overrides);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ReceiveEndpointRegistry>();
        builder.Services.AddSingleton<ControlAuthorization>();
        builder.Services.AddSingleton<ControlAuditLog>();
        builder.Services.AddSingleton<ControlBus>();
        builder.Services.AddBuiltInControlCommands();
        builder.Services.AddDeadLetterCommands();
        builder.Services.AddRouteCommands();
        builder.AddValidatedOptions<MessageStoreOptions>(MessageStoreOptions.Section, o =>
            o.Exchanges.Any(string.IsNullOrWhiteSpace) ? $"{MessageStoreOptions.Section}:Exchanges: an exchange name is empty" : null);
        builder.Services.AddMessageStore();
        builder.AddValidatedOptions<ProbeOptions>(ProbeOptions.Section, o =>
        {
            var bad = o.Routes.Select((r, i) => (r, i)).FirstOrDefault(x => string.IsNullOrWhiteSpace(x.r.Queue) || string.IsNullOrWhiteSpace(x.r.ExpectOn)
                || !x.r.Body.Contains("{probeId}", StringComparison.Ordinal));
            return bad.r is null ? null : $"{ProbeOptions.Section}:Routes:{bad.i}: a probe needs Queue, ExpectOn and a Body containing {{probeId}}";
        });
        builder.Services.AddSingleton<ProbeMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ProbeMonitor>());
        builder.Services.AddHealthChecks().AddCheck<ProbeMonitor>("probes", tags: [Health.HealthExtensions.Ready]);
        builder.Services.AddDashboardCommands();
        builder.Services.AddHostedService<ControlBusStartupCheck>();
    }

    /// <inheritdoc />
    public void ConfigureModel(ModelBuilder modelBuilder)
    {
        ControlAuditLog.ConfigureModel(modelBuilder);
        MessageStore.ConfigureModel(modelBuilder);
    }

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.AddConsumer<ControlCommandConsumer>().ExcludeFromConfigureEndpoints();
        bus.AddReceiveEndpointObserver(provider => provider.GetRequiredService<ReceiveEndpointRegistry>());
    }

    /// <inheritdoc />
    public void ConfigureBus(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator bus)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(bus);
        var options = context.GetRequiredService<IOptions<ControlBusOptions>>().Value;
        bus.ReceiveEndpoint($"{options.QueuePrefix}-{Environment.MachineName.ToLowerInvariant()}-{InstanceId}", e =>
        {
            e.AutoDelete = true;
            e.Durable = false;
            e.ConfigureConsumer<ControlCommandConsumer>(context);
        });
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints) => endpoints.MapControlBus();
}

/// <summary>Warns at start when no control bus key is configured (every control call will be refused).</summary>
public sealed partial class ControlBusStartupCheck(IOptions<ControlBusOptions> options, ILogger<ControlBusStartupCheck> logger) : IHostedService
{
    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (options.Value.ApiKeys.Count == 0)
            LogNoKeys(logger, ControlBusOptions.Section);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "No control bus key is configured ({Section}:ApiKeys): every control command will be refused")]
    static partial void LogNoKeys(ILogger logger, string section);
}
