using System.ComponentModel.DataAnnotations;
using Npgsql;

namespace Integration.Hosting;

/// <summary>Database connection, bound from <c>Integration:Postgres</c>.</summary>
public sealed class PostgresOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Postgres";

    /// <summary>Npgsql connection string. Its password is never logged.</summary>
    [Required] public string ConnectionString { get; set; } = "";

    /// <summary>Apply EF Core migrations when the host starts.</summary>
    public bool MigrateOnStart { get; set; } = true;

    /// <summary>How long start-up waits for the database before failing.</summary>
    [Range(0, 3600)] public int StartupTimeoutSeconds { get; set; } = 60;

    internal static IEnumerable<string> Validate(PostgresOptions options)
    {
        string? failure = null;
        try
        {
            _ = new NpgsqlConnectionStringBuilder(options.ConnectionString);
        }
        catch (ArgumentException exception)
        {
            failure = $"{Section}:ConnectionString is not a valid Npgsql connection string: {exception.Message}";
        }

        if (failure is not null)
            yield return failure;
    }
}
