using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Integration.Hosting.Health;

/// <summary>Ready when a <c>SELECT 1</c> on the application's database answers within five seconds.</summary>
sealed class DatabaseHealthCheck<TDbContext>(IServiceScopeFactory scopes) : IHealthCheck
    where TDbContext : DbContext
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<TDbContext>();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await db.Database.ExecuteSqlRawAsync("SELECT 1", timeout.Token).ConfigureAwait(false);
            return HealthCheckResult.Healthy("PostgreSQL answered");
        }
        catch (Exception exception) when (exception is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, $"PostgreSQL unreachable: {exception.Message}", exception);
        }
    }
}
