using NUnit.Framework;

namespace Integration.Testing;

/// <summary>
/// Derive one <c>[SetUpFixture]</c> per test assembly (outside any namespace) from this class: the shared
/// infrastructure starts lazily when the first integration test asks for it, and containers stop at the end.
/// </summary>
public abstract class IntegrationSetUpFixture
{
    [OneTimeTearDown]
    public Task StopInfrastructure() => IntegrationInfrastructure.ShutdownAsync();
}
