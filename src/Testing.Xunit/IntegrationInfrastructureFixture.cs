using Xunit;

namespace Integration.Testing.Xunit;

/// <summary>
/// The shared infrastructure as an xUnit collection fixture: started before the first test of the collection (so a
/// missing broker or database fails it with the variables to set), stopped after the last (containers this run
/// started; services named by environment variables are left running).
/// </summary>
/// <example>
/// <code>
/// [CollectionDefinition(IntegrationCollection.Name)]
/// public sealed class IntegrationCollection : ICollectionFixture&lt;IntegrationInfrastructureFixture&gt;
/// {
///     public const string Name = "Integration";
/// }
///
/// [Collection(IntegrationCollection.Name)]
/// public sealed class Orders_Specs(IntegrationInfrastructureFixture infrastructure) { ... }
/// </code>
/// </example>
public sealed class IntegrationInfrastructureFixture : IAsyncLifetime
{
    IntegrationInfrastructure? _infrastructure;

    /// <summary>The broker and database every test of the collection runs on.</summary>
    public IntegrationInfrastructure Infrastructure =>
        _infrastructure ?? throw new InvalidOperationException("The integration infrastructure is not started: use IntegrationInfrastructureFixture as an xUnit collection fixture.");

    /// <summary>Starts (or finds) the broker and the database.</summary>
    public async Task InitializeAsync() => _infrastructure = await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);

    /// <summary>Stops containers this run started.</summary>
    public Task DisposeAsync() => IntegrationInfrastructure.ShutdownAsync();
}
