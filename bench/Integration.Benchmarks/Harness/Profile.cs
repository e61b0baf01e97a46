using System.Diagnostics.Metrics;
using System.Globalization;
using Integration.Testing;
using Npgsql;

namespace Integration.Benchmarks.Harness;

/// <summary>
/// Where the time goes, per message (<c>--profile</c>): Npgsql commands (client round trips, each a batch of statements;
/// BEGIN rides on the next command, COMMIT is one more), and from <c>pg_stat_database</c> of the run's own database the
/// transactions committed (each one WAL flush with synchronous_commit on) and the rows inserted, updated, deleted; and from
/// <c>/proc</c> the CPU time per message of this process (writers, hosts, relay, consumers; ours or the peer's), of
/// PostgreSQL (every postgres process, exited backends through their postmaster) and of RabbitMQ (beam.smp), beside the
/// machine's idle time: on a 2-core machine that shares everything, what a case costs in CPU is what bounds it.
/// </summary>
public sealed class Profile : IDisposable
{
    static long _commands;
    static readonly MeterListener Listener = StartListener();

    readonly IntegrationInfrastructure _infrastructure;
    readonly TestDatabase _database;
    long _commandsBefore;
    readonly Stats _before;
    CpuTimes _cpuBefore = CpuTimes.Read();
    CpuTimes? _cpuAtEnd;
    DateTime _startedAt = DateTime.UtcNow;
    TimeSpan _window;
    Memory _memoryBefore = Memory.Read();
    Memory? _memoryAtEnd;

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
        _cpuBefore = CpuTimes.Read();
        _memoryBefore = Memory.Read();
        _startedAt = DateTime.UtcNow;
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

    /// <summary>The measured traffic is through: the machine's busy and idle share is taken over the window up to here (the
    /// processes' CPU keeps counting until the report, for the last marks and commits).</summary>
    public void TrafficDone()
    {
        _cpuAtEnd ??= CpuTimes.Read();
        _memoryAtEnd ??= Memory.Read();
        _window = DateTime.UtcNow - _startedAt;
    }

    /// <summary>Prints the breakdown per message; call after the host stopped (its backends flush their statistics when they exit).</summary>
    public async Task ReportAsync(string what, int messages)
    {
        var commands = Interlocked.Read(ref _commands) - _commandsBefore - 1;   // less the statistics read itself
        var cpu = CpuTimes.Read() - _cpuBefore;
        var window = (_cpuAtEnd ?? CpuTimes.Read()) - _cpuBefore;
        var busyShare = window.Busy + window.Idle > 0 ? window.Busy / (window.Busy + window.Idle) : 0;
        var after = await ReadAsync(_infrastructure, _database.Name, settle: true);
        var c = CultureInfo.InvariantCulture;
        double Per(long value) => (double)value / messages;
        Console.Error.WriteLine(string.Create(c,
            $"[profile] {what}: per message {Per(commands):0.00} Npgsql commands (process-wide), {Per(after.Commits - _before.Commits):0.00} transactions (read-only ones and Npgsql's connection resets included), " +
            $"{Per(after.Inserted - _before.Inserted):0.00} rows inserted, {Per(after.Updated - _before.Updated):0.00} updated, {Per(after.Deleted - _before.Deleted):0.00} deleted, " +
            $"{Per(after.Returned - _before.Returned):0.0} rows read ({messages} messages)"));
        double Us(double seconds) => seconds * 1e6 / messages;
        Console.Error.WriteLine(string.Create(c,
            $"[profile] {what}: CPU per message {Us(cpu.Process + cpu.Postgres + cpu.RabbitMq):0} µs = this process {Us(cpu.Process):0} + PostgreSQL {Us(cpu.Postgres):0} + RabbitMQ {Us(cpu.RabbitMq):0} " +
            $"(from /proc; while the traffic ran, {_window.TotalSeconds:0.0} s, the machine's {Environment.ProcessorCount} cores were {busyShare:P0} busy)"));
        var memory = (_memoryAtEnd ?? Memory.Read()) - _memoryBefore;
        Console.Error.WriteLine(string.Create(c,
            $"[profile] {what}: this process allocated {Per(memory.Allocated) / 1024:0.0} KiB per message; GCs gen0/gen1/gen2 {memory.Gen0}/{memory.Gen1}/{memory.Gen2}, " +
            $"paused {memory.Paused.TotalMilliseconds / Math.Max(1, _window.TotalMilliseconds):P1} of the traffic's {_window.TotalSeconds:0.0} s"));
    }

    /// <summary>This process's allocations and collections so far (every host in it: ours, the peer's, the consumer's).</summary>
    sealed record Memory(long Allocated, int Gen0, int Gen1, int Gen2, TimeSpan Paused)
    {
        public static Memory Read() => new(GC.GetTotalAllocatedBytes(), GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration());

        public static Memory operator -(Memory a, Memory b) =>
            new(a.Allocated - b.Allocated, a.Gen0 - b.Gen0, a.Gen1 - b.Gen1, a.Gen2 - b.Gen2, a.Paused - b.Paused);
    }

    /// <summary>Cumulative CPU seconds from /proc: this process, every postgres process, RabbitMQ's beam.smp, and the machine.</summary>
    sealed record CpuTimes(double Process, double Postgres, double RabbitMq, double Busy, double Idle)
    {
        const double Tick = 100.0;   // USER_HZ on Linux

        public static CpuTimes operator -(CpuTimes a, CpuTimes b) =>
            new(a.Process - b.Process, a.Postgres - b.Postgres, a.RabbitMq - b.RabbitMq, a.Busy - b.Busy, a.Idle - b.Idle);

        public static CpuTimes Read()
        {
            if (!OperatingSystem.IsLinux())
                return new CpuTimes(0, 0, 0, 0, 0);
            double process = 0, postgres = 0, rabbit = 0;
            var self = Environment.ProcessId;
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), out var pid))
                    continue;
                string stat;
                try
                {
                    stat = File.ReadAllText(Path.Combine(dir, "stat"));
                }
                catch (IOException)
                {
                    continue;   // exited meanwhile
                }
                catch (UnauthorizedAccessException)
                {
                    continue;
                }

                var open = stat.IndexOf('(', StringComparison.Ordinal);
                var close = stat.LastIndexOf(')');
                if (open < 0 || close < open)
                    continue;
                var name = stat[(open + 1)..close];
                var fields = stat[(close + 2)..].Split(' ');
                // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
                double Field(int i) => fields.Length > i && long.TryParse(fields[i], CultureInfo.InvariantCulture, out var v) ? v / Tick : 0;
                if (pid == self)
                    process += Field(11) + Field(12);
                else if (name == "postgres")
                    postgres += Field(11) + Field(12) + Field(13) + Field(14);   // a postmaster's children's times hold its exited backends
                else if (name == "beam.smp")
                    rabbit += Field(11) + Field(12);
            }

            double busy = 0, idle = 0;
            try
            {
                var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                double F(int i) => cpu.Length > i && long.TryParse(cpu[i], CultureInfo.InvariantCulture, out var v) ? v / Tick : 0;
                busy = F(1) + F(2) + F(3) + F(6) + F(7) + F(8);   // user nice system irq softirq steal
                idle = F(4) + F(5);                               // idle iowait
            }
            catch (IOException)
            {
            }

            return new CpuTimes(process, postgres, rabbit, busy, idle);
        }
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
