using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Hosting.Telemetry;

/// <summary>Console logging: single-line text with scopes, or JSON lines when <c>Integration:Host:JsonLogs</c> is true.</summary>
static class LoggingExtensions
{
    internal static void AddStructuredLogging(this IHostApplicationBuilder builder, IntegrationHostOptions settings)
    {
        builder.Logging.ClearProviders();
        if (settings.JsonLogs)
        {
            builder.Logging.AddJsonConsole(o =>
            {
                o.IncludeScopes = true;
                o.TimestampFormat = "O";
                o.UseUtcTimestamp = true;
            });
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.IncludeScopes = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.UseUtcTimestamp = true;
            });
        }
    }
}
