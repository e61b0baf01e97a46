using System.Diagnostics.Metrics;
using System.Globalization;
using Integration.Testing;
using Npgsql;

namespace Integration.Benchmarks.Harness;

/// <summary>
/// Where the time goes, per message (<c>--profile</c>): Npgsql commands (client round trips, each a batch of statements;
/// BEGIN rides on the next command, COMMIT is one more), and from <c>pg_stat_database</c> of the run's own database the
/// transactions committed (each one WAL flush with synchronous_commit on) and the rows inserted, updated, deleted.
/// </summary>
public sealed class Profile : IDisposable
{
    static long _commands;
    static readonly MeterListener Listener = StartListener();

    readonly IntegrationInfrastructure _infrastructure;
    readonly TestDatabase _database;
    long _commandsBefore;
    readonly Stats _before;

    Profile(IntegrationInfrastructure infrastructure, TestDatabase database, Stats before)
    {
        _infrastructure = infrastructure;
        _database = database;
        _before = before;
        _commandsBefore = Interlocked.Read(ref _commands);
    }

    /// <summary>Starts the command count now (after the settle reads).</summary>
    Profile Started()
    {
        _commandsBefore = Interlocked.Read(ref _commands);
        return this;
    }

    static MeterListener StartListener()
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "Npgsql" && instrument.Name == "db.client.operation.duration")
                    l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<double>((_, _, _, _) => Interlocked.Increment(ref _commands));
        listener.Start();
        return listener;
    }

    /// <summary>Null unless profiling is on; else starts counting for <paramref name="database"/>.</summary>
    public static async Task<Profile?> StartAsync(BenchContext context, TestDatabase database)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(database);
        if (!context.Settings.Profile)
            return null;
        _ = Listener;
        // Settle first too: what the host did at start (creating tables) must not be counted in the run.
        return new Profile(context.Infrastructure, database, await ReadAsync(context.Infrastructure, database.Name, settle: true)).Started();
    }

    /// <summary>Prints the breakdown per message; call after the host stopped (its backends flush their statistics when they exit).</summary>
    public async Task ReportAsync(string what, int messages)
    {
        var commands = Interlocked.Read(ref _commands) - _commandsBefore - 1;   // less the statistics read itself
        var after = await ReadAsync(_infrastructure, _database.Name, settle: true);
        var c = CultureInfo.InvariantCulture;
        double Per(long value) => (double)value / messages;
        Console.Error.WriteLine(string.Create(c,
            $"[profile] {what}: per message {Per(commands):0.00} Npgsql commands (process-wide), {Per(after.Commits - _before.Commits):0.00} transactions (read-only ones and Npgsql's connection resets included), " +
            $"{Per(after.Inserted - _before.Inserted):0.00} rows inserted, {Per(after.Updated - _before.Updated):0.00} updated, {Per(after.Deleted - _before.Deleted):0.00} deleted, " +
            $"{Per(after.Returned - _before.Returned):0.0} rows read ({messages} messages)"));
    }

    public void Dispose()
    {
    }

    sealed record Stats(long Commits, long Inserted, long Updated, long Deleted, long Returned);

    static async Task<Stats> ReadAsync(IntegrationInfrastructure infrastructure, string database, bool settle)
    {
        await using var connection = new NpgsqlConnection(infrastructure.PostgresConnectionString);
        await connection.OpenAsync();
        if (settle)
        {
            // A backend flushes its statistics when it exits: close the run's pooled connections, then give them a moment.
            NpgsqlConnection.ClearAllPools();
            await Task.Delay(TimeSpan.FromSeconds(1));
        }
        await using var command = new NpgsqlCommand(
            "SELECT pg_stat_clear_snapshot(); SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, tup_returned FROM pg_stat_database WHERE datname = @name", connection);
        command.Parameters.AddWithValue("name", database);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.NextResultAsync();
        return await reader.ReadAsync()
            ? new Stats(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4))
            : new Stats(0, 0, 0, 0, 0);
    }
}
