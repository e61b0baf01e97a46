using Integration.Host.Configuration;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Integration.Host.Observability;

/// <summary>OpenTelemetry traces and metrics: MassTransit's ActivitySource and Meter, ASP.NET Core, the runtime and our own meters.</summary>
public static class TelemetryExtensions
{
    /// <summary>Activity sources the host traces.</summary>
    public static readonly string[] Sources = ["MassTransit", "Integration.*"];

    /// <summary>Meters the host exports.</summary>
    public static readonly string[] Meters = ["MassTransit", "Integration.*"];

    /// <summary>
    /// Adds tracing and metrics. Traces go to OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set; metrics are always
    /// scraped at <c>/metrics</c> (Prometheus format) and also pushed over OTLP when the endpoint is set.
    /// </summary>
    public static IHostApplicationBuilder AddTelemetry(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var settings = builder.Configuration.GetSection(HostSettings.Section).Get<HostSettings>() ?? new HostSettings();
        var otlp = !string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);

        builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(settings.ServiceName))
            .WithTracing(tracing =>
            {
                tracing.AddSource(Sources).AddAspNetCoreInstrumentation(o =>
                    o.Filter = context => !context.Request.Path.StartsWithSegments("/health") && !context.Request.Path.StartsWithSegments("/metrics"));
                if (otlp)
                    tracing.AddOtlpExporter();
            })
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(Meters).AddAspNetCoreInstrumentation().AddRuntimeInstrumentation().AddPrometheusExporter();
                if (otlp)
                    metrics.AddOtlpExporter();
            });
        return builder;
    }

    /// <summary>Maps the Prometheus scrape endpoint at <c>/metrics</c>.</summary>
    public static WebApplication MapTelemetry(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }
}
