using Integration.Host.Features;
using Integration.Host.Fulfillment;
using Integration.Host.Persistence;
using Integration.Hosting;
using Integration.Operations;

namespace Integration.Host;

/// <summary>Composition of the sample host: the framework's defaults and operations, then the sample's features.</summary>
public static class HostingExtensions
{
    /// <summary>Adds the host defaults (broker, database, telemetry, health), operations and the sample features.</summary>
    public static IHostApplicationBuilder AddIntegrationHost(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddIntegrationDefaults<HostDbContext>(bus =>
        {
            foreach (var feature in HostFeatures.All)
                feature.AddBus(bus, builder.Configuration);
        });
        builder.AddIntegrationOperations<HostDbContext>(operations =>
            operations.AddSaga<OrderFulfillmentState>("order-fulfillment", s => s.CurrentState));
        foreach (var feature in HostFeatures.All)
            feature.AddServices(builder);
        return builder;
    }

    /// <summary>Maps health, metrics, the control API, the dashboard and every feature's endpoints.</summary>
    public static WebApplication MapIntegrationHost(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapIntegrationDefaults();
        app.MapIntegrationOperations();
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
