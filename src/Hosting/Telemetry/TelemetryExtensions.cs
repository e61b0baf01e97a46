using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Integration.Hosting.Telemetry;

/// <summary>
/// OpenTelemetry: MassTransit's and every <c>Integration.*</c> ActivitySource and Meter, ASP.NET Core and the runtime.
/// Traces go to OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set; metrics are always scraped at <c>/metrics</c>
/// (Prometheus) and also pushed over OTLP when the endpoint is set.
/// </summary>
static class TelemetryExtensions
{
    static readonly string[] Sources = ["MassTransit", "Integration.*"];

    internal static void AddIntegrationTelemetry(this IHostApplicationBuilder builder, IntegrationHostOptions settings)
    {
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
                metrics.AddMeter(Sources).AddAspNetCoreInstrumentation().AddRuntimeInstrumentation().AddPrometheusExporter();
                if (otlp)
                    metrics.AddOtlpExporter();
            });
    }
}
