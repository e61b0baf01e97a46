using Integration.Host.Configuration;
using Integration.Host.Features;
using Integration.Host.Health;
using Integration.Host.Messaging;
using Integration.Host.Observability;
using Integration.Host.Persistence;

namespace Integration.Host;

/// <summary>Composition of the worker host: every part is one <c>Add*</c> call on the builder.</summary>
public static class HostingExtensions
{
    /// <summary>Adds configuration, persistence, messaging, telemetry, health and the sample features.</summary>
    public static IHostApplicationBuilder AddIntegrationHost(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var features = HostFeatures.All;

        builder.AddHostConfiguration();
        builder.AddStructuredLogging();
        builder.AddPersistence(features);
        foreach (var feature in features)
            feature.AddServices(builder);
        builder.AddMessaging(features);
        builder.AddTelemetry();
        builder.AddHealth();
        return builder;
    }

    /// <summary>Maps health, metrics and every feature's endpoints.</summary>
    public static WebApplication MapIntegrationHost(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapHealth();
        app.MapTelemetry();
        foreach (var feature in HostFeatures.All)
            feature.MapEndpoints(app);
        app.MapGet("/", (HttpContext http) =>
        {
            var index = new
            {
                service = "Integration.Host",
                health = new[] { "/health/live", "/health/ready" },
                metrics = "/metrics",
                dashboard = "/dashboard",
                features = HostFeatures.All.Select(f => f.Name),
            };
            // A browser gets a page linking the dashboard; tools get the JSON index.
            return http.Request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase)
                ? Results.Content($"""
                    <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{index.service}</title></head>
                    <body style="font-family:system-ui,sans-serif"><h1>{index.service}</h1><ul>
                    <li><a href="/dashboard">Operations dashboard</a></li><li><a href="/health/ready">Readiness</a></li>
                    <li><a href="/metrics">Metrics (Prometheus)</a></li></ul><p>Features: {string.Join(", ", index.features)}</p></body></html>
                    """, "text/html; charset=utf-8")
                : Results.Json(index);
        }).ExcludeFromDescription();
        return app;
    }
}
