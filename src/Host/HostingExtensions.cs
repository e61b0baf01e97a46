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
        app.MapGet("/", () => Results.Json(new
        {
            service = "Integration.Host",
            health = new[] { "/health/live", "/health/ready" },
            metrics = "/metrics",
            features = HostFeatures.All.Select(f => f.Name),
        })).ExcludeFromDescription();
        return app;
    }
}
