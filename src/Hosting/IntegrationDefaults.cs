using System.Security.Authentication;
using Integration.Hosting.Health;
using Integration.Hosting.Persistence;
using Integration.Hosting.Telemetry;
using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Integration.Hosting;

/// <summary>
/// Configures the RabbitMQ bus once it is created, after the registrations: receive endpoints of a library (the control
/// bus queue) or of the application. Register implementations in DI, or use
/// <see cref="IntegrationDefaults.AddIntegrationBusConfiguration"/>.
/// </summary>
public interface IConfigureRabbitMqBus
{
    /// <summary>Adds receive endpoints or bus-level settings.</summary>
    void Configure(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator configurator);
}

/// <summary>
/// Everything a worker host needs around its own code, in one call on the builder (the shape of .NET Aspire's
/// <c>AddServiceDefaults</c>): validated options, the application's DbContext on PostgreSQL with migrations applied at
/// start, MassTransit on RabbitMQ (publisher confirms, TLS, client certificates), the integration routes, OpenTelemetry
/// traces and metrics, structured console logs and the readiness checks; <see cref="MapIntegrationDefaults"/> maps
/// <c>/health/live</c>, <c>/health/ready</c> and <c>/metrics</c>.
/// </summary>
public static class IntegrationDefaults
{
    /// <summary>
    /// Adds the host defaults for an application whose database is <typeparamref name="TDbContext"/>.
    /// Settings: <c>Integration:Host</c> (<see cref="IntegrationHostOptions"/>), <c>Integration:RabbitMq</c>
    /// (<see cref="RabbitMqOptions"/>), <c>Integration:Postgres</c> (<see cref="PostgresOptions"/>), all validated at start.
    /// </summary>
    /// <param name="builder">The application builder.</param>
    /// <param name="configureBus">
    /// The application's MassTransit registrations (consumers, sagas, <c>AddIntegrationRoutes</c>, <c>AddIntegrationScheduler</c>).
    /// Every registered consumer and saga gets its endpoint (<c>ConfigureEndpoints</c>), every declared route its queue.
    /// </param>
    public static IHostApplicationBuilder AddIntegrationDefaults<TDbContext>(this IHostApplicationBuilder builder, Action<IBusRegistrationConfigurator>? configureBus = null)
        where TDbContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        // One service name for everything derived from it (connection names, telemetry, the control and scheduler
        // queues): when none is configured, the application's name in kebab case is written back to configuration, so
        // the libraries that read Integration:Host:ServiceName see the same name.
        var serviceNameKey = $"{IntegrationHostOptions.Section}:{nameof(IntegrationHostOptions.ServiceName)}";
        if (string.IsNullOrWhiteSpace(builder.Configuration[serviceNameKey]))
            builder.Configuration[serviceNameKey] = IntegrationHostOptions.DefaultServiceName(builder.Environment.ApplicationName);
        services.AddIntegrationOptions<RabbitMqOptions>(RabbitMqOptions.Section, RabbitMqOptions.Validate);
        services.AddIntegrationOptions<PostgresOptions>(PostgresOptions.Section, PostgresOptions.Validate);
        services.AddIntegrationOptions<IntegrationHostOptions>(IntegrationHostOptions.Section);

        var host = IntegrationHostOptions.Read(builder.Configuration, builder.Environment.ApplicationName);
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(host.ShutdownTimeoutSeconds + 5));
        services.Configure<KestrelServerOptions>(o => o.Limits.MaxRequestBodySize = host.MaxRequestBodyBytes);
        builder.AddStructuredLogging(host);

        // Options built once, not per scope: they depend on singletons only, and building them per scope (EF Core's default)
        // costs every unit of work an options build and a lookup of EF Core's internal service provider (docs/performance.md).
        services.AddDbContext<TDbContext>((provider, options) =>
            options.UseNpgsql(provider.GetRequiredService<IOptions<PostgresOptions>>().Value.ConnectionString, npgsql => npgsql.EnableRetryOnFailure(3)),
            ServiceLifetime.Scoped, ServiceLifetime.Singleton);
        // Registered before the bus, so the tables are there when consumers start.
        services.AddHostedService<DatabaseMigrator<TDbContext>>();

        // Where route steps send: each destination declared once on a channel of its own (a refusal fails the send into
        // _error instead of closing the consumer's channel); queue:{name}, or with quorum queues its exchange.
        services.AddSingleton<IQueueAddressing, DestinationQueueAddressing>();
        services.AddMassTransit(bus =>
        {
            bus.SetKebabCaseEndpointNameFormatter();
            configureBus?.Invoke(bus);
            bus.UsingRabbitMq((context, rabbit) =>
            {
                var options = context.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
                var serviceName = context.GetRequiredService<IOptions<IntegrationHostOptions>>().Value.ServiceName;
                ConfigureHost(rabbit, options, serviceName);
                rabbit.PrefetchCount = options.PrefetchCount;
                // MassTransit's meter (received/consumed/published/sent/failed, durations, in flight) records nothing unless switched on.
                rabbit.UseInstrumentation(serviceName: serviceName);
                // Before any endpoint is configured, so the queue type reaches all of them.
                rabbit.ConnectEndpointConfigurationObserver(new QuorumQueues(options));
                foreach (var configuration in context.GetServices<IConfigureRabbitMqBus>())
                    configuration.Configure(context, rabbit);
                rabbit.ConfigureIntegrationRoutes(context);
                rabbit.ConfigureEndpoints(context);
            });
        });
        services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            // The host starts while the broker is down; /health/ready tells when it is connected. No start timeout: with one,
            // a bus start that outlasted it (a broker down longer, a saturated machine) faulted unobserved and left a live
            // process that never consumed; without, the bus keeps connecting until it is up or the host stops.
            o.WaitUntilStarted = false;
            o.StartTimeout = null;
            o.StopTimeout = TimeSpan.FromSeconds(host.ShutdownTimeoutSeconds);
            o.ConsumerStopTimeout = TimeSpan.FromSeconds(host.ShutdownTimeoutSeconds);
        });

        builder.AddIntegrationTelemetry(host);
        services.AddIntegrationHealthChecks<TDbContext>();
        return builder;
    }

    /// <summary>Configures the bus after the registrations (e.g. a receive endpoint of your own); called once per bus.</summary>
    public static IServiceCollection AddIntegrationBusConfiguration(this IServiceCollection services, Action<IBusRegistrationContext, IRabbitMqBusFactoryConfigurator> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddSingleton<IConfigureRabbitMqBus>(new DelegateBusConfiguration(configure));
        return services;
    }

    /// <summary>Maps <c>/health/live</c>, <c>/health/ready</c> (every check tagged <c>ready</c>, each with its reason) and <c>/metrics</c> (Prometheus).</summary>
    public static IEndpointRouteBuilder MapIntegrationDefaults(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapIntegrationHealth();
        endpoints.MapPrometheusScrapingEndpoint("/metrics");
        return endpoints;
    }

    static void ConfigureHost(IRabbitMqBusFactoryConfigurator rabbit, RabbitMqOptions options, string serviceName) =>
        rabbit.Host(options.Host, (ushort)options.Port, options.VirtualHost, serviceName, h =>
        {
            if (options.ClusterNodes.Count > 0)
            {
                h.UseCluster(cluster =>
                {
                    foreach (var (node, port) in options.EffectiveNodes)
                        cluster.Node($"{node}:{port}");
                });
            }

            h.Username(options.Username);
            h.Password(options.Password);
            h.Heartbeat(TimeSpan.FromSeconds(options.HeartbeatSeconds));
            h.PublisherConfirmation = true;
            if (!options.UseTls)
                return;
            h.UseSsl(ssl =>
            {
                ssl.Protocol = SslProtocols.Tls12 | SslProtocols.Tls13;
                ssl.ServerName = options.TlsServerName ?? options.Host;
                if (!string.IsNullOrWhiteSpace(options.TlsClientCertificatePath))
                {
                    ssl.CertificatePath = options.TlsClientCertificatePath;
                    ssl.CertificatePassphrase = options.TlsClientCertificatePassphrase;
                }
            });
        });

    sealed class DelegateBusConfiguration(Action<IBusRegistrationContext, IRabbitMqBusFactoryConfigurator> configure) : IConfigureRabbitMqBus
    {
        public void Configure(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator configurator) => configure(context, configurator);
    }
}
