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

    /// <summary>The database's name.</summary>
    public string Name { get; }

    /// <summary>Connection string of the database (the infrastructure's role).</summary>
    public string ConnectionString { get; }

    /// <summary>Drops the database, closing any connection still open to it.</summary>
    public async ValueTask DisposeAsync() => await _infrastructure.DropDatabaseAsync(Name).ConfigureAwait(false);
}
