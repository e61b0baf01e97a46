using System.Security.Authentication;
using Integration.Host.Configuration;
using Integration.Host.Features;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Integration.Host.Messaging;

/// <summary>MassTransit over RabbitMQ, configured from <c>Integration:RabbitMq</c>, with each feature's consumers and endpoints.</summary>
public static class MessagingExtensions
{
    /// <summary>Adds the bus. The host starts even while the broker is down; <c>/health/ready</c> tells when it is connected.</summary>
    public static IHostApplicationBuilder AddMessaging(this IHostApplicationBuilder builder, IReadOnlyList<IHostFeature> features)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(features);
        var settings = builder.Configuration.GetSection(HostSettings.Section).Get<HostSettings>() ?? new HostSettings();

        builder.Services.AddMassTransit(bus =>
        {
            bus.SetKebabCaseEndpointNameFormatter();
            foreach (var feature in features)
                feature.AddBus(bus, builder.Configuration);

            bus.UsingRabbitMq((context, rabbit) =>
            {
                var options = context.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
                var host = context.GetRequiredService<IOptions<HostSettings>>().Value;
                rabbit.Host(options.Host, (ushort)options.Port, options.VirtualHost, host.ServiceName, h =>
                {
                    h.Username(options.Username);
                    h.Password(options.Password);
                    h.Heartbeat(TimeSpan.FromSeconds(options.HeartbeatSeconds));
                    h.PublisherConfirmation = true;
                    if (options.UseTls)
                    {
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
                    }
                });
                rabbit.PrefetchCount = options.PrefetchCount;
                // MassTransit's meter (messages received/consumed/published/sent/failed, durations, in-flight) records nothing unless switched on.
                rabbit.UseInstrumentation(serviceName: host.ServiceName);

                foreach (var feature in features)
                    feature.ConfigureBus(context, rabbit);
                rabbit.ConfigureEndpoints(context);
            });
        });

        builder.Services.AddOptions<MassTransitHostOptions>().Configure(o =>
        {
            o.WaitUntilStarted = false;
            o.StartTimeout = TimeSpan.FromSeconds(30);
            o.StopTimeout = TimeSpan.FromSeconds(settings.ShutdownTimeoutSeconds);
            o.ConsumerStopTimeout = TimeSpan.FromSeconds(settings.ShutdownTimeoutSeconds);
        });
        return builder;
    }
}
