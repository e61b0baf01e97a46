using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Integration.Hosting.Health;

/// <summary>
/// <c>/health/live</c> answers while the process serves requests; <c>/health/ready</c> runs every check tagged
/// <see cref="IntegrationHealth.Ready"/> (the broker connection, MassTransit's bus and receive endpoints, the database, the
/// outbox, probes) and reports each with its reason.
/// </summary>
static class HealthEndpoints
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = false };

    internal static IServiceCollection AddIntegrationHealthChecks<TDbContext>(this IServiceCollection services)
        where TDbContext : DbContext
    {
        services.AddSingleton<BrokerNode>();
        services.AddSingleton<BrokerHealthCheck>();
        services.AddHealthChecks()
            .AddCheck<BrokerHealthCheck>("rabbitmq", tags: [IntegrationHealth.Ready])
            .AddCheck<DatabaseHealthCheck<TDbContext>>("postgres", tags: [IntegrationHealth.Ready]);
        return services;
    }

    internal static IEndpointRouteBuilder MapIntegrationHealth(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteJson });
        endpoints.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains(IntegrationHealth.Ready), ResponseWriter = WriteJson });
        return endpoints;
    }

    static Task WriteJson(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var body = new
        {
            status = report.Status.ToString(),
            durationMs = report.TotalDuration.TotalMilliseconds,
            checks = report.Entries.ToDictionary(e => e.Key, e => new
            {
                status = e.Value.Status.ToString(),
                description = e.Value.Description,
                error = e.Value.Exception?.Message,
                data = e.Value.Data.Count == 0 ? null : e.Value.Data.ToDictionary(d => d.Key, d => d.Value?.ToString()),
            }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, Json));
    }
}
