using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Integration.Hosting.Persistence;

/// <summary>
/// Applies the application's EF Core migrations at start (when <c>Integration:Postgres:MigrateOnStart</c> is true),
/// waiting for the database up to <c>StartupTimeoutSeconds</c>. EF Core takes a database lock while migrating, so hosts
/// starting together apply each migration once.
/// </summary>
sealed partial class DatabaseMigrator<TDbContext>(IServiceProvider services, IOptions<PostgresOptions> options, ILogger<DatabaseMigrator<TDbContext>> logger)
    : IHostedService
    where TDbContext : DbContext
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var settings = options.Value;
        if (!settings.MigrateOnStart)
            return;

        var deadline = DateTime.UtcNow.AddSeconds(settings.StartupTimeoutSeconds);
        var attempt = 0;
        while (true)
        {
            try
            {
                await MigrateAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (NpgsqlException exception) when (DateTime.UtcNow < deadline && exception.IsTransient)
            {
                attempt++;
                LogWaiting(logger, attempt, exception.Message);
                await Task.Delay(TimeSpan.FromSeconds(Math.Min(5, attempt)), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is NpgsqlException or InvalidOperationException)
            {
                var host = new NpgsqlConnectionStringBuilder(settings.ConnectionString).Host;
                throw new InvalidOperationException(
                    $"Could not migrate the database at host '{host}' ({PostgresOptions.Section}:ConnectionString): {exception.Message}", exception);
            }
        }
    }

    async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
        var pending = (await db.Database.GetPendingMigrationsAsync(cancellationToken).ConfigureAwait(false)).ToList();
        if (pending.Count == 0)
            return;
        LogMigrating(logger, pending.Count, string.Join(", ", pending));
        await db.Database.MigrateAsync(cancellationToken).ConfigureAwait(false);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Database not reachable yet (attempt {Attempt}): {Reason}")]
    static partial void LogWaiting(ILogger logger, int attempt, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Applying {Count} migration(s): {Migrations}")]
    static partial void LogMigrating(ILogger logger, int count, string migrations);
}
