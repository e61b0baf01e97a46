using NUnit.Framework;

namespace Integration.Testing.NUnit;

/// <summary>
/// Derive one <c>[SetUpFixture]</c> per test assembly (outside any namespace) from this class: the shared
/// infrastructure starts lazily when the first integration test asks for it, and containers stop at the end.
/// </summary>
public abstract class IntegrationSetUpFixture
{
    /// <summary>Stops containers this run started; services named by environment variables are left running.</summary>
    [OneTimeTearDown]
    public Task StopInfrastructure() => IntegrationInfrastructure.ShutdownAsync();
}
