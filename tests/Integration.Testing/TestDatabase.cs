namespace Integration.Testing;

/// <summary>A PostgreSQL database that belongs to one test; dropped when disposed.</summary>
public sealed class TestDatabase : IAsyncDisposable
{
    readonly IntegrationInfrastructure _infrastructure;

    internal TestDatabase(IntegrationInfrastructure infrastructure, string name, string connectionString)
    {
        _infrastructure = infrastructure;
        Name = name;
        ConnectionString = connectionString;
    }

    public string Name { get; }
    public string ConnectionString { get; }

    public async ValueTask DisposeAsync() => await _infrastructure.DropDatabaseAsync(Name).ConfigureAwait(false);
}
