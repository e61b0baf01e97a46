using System.Globalization;
using System.Text;
using System.Text.Json;
using Integration.Testing;
using Npgsql;

namespace Integration.Reliability.Tests.Support;

/// <summary>
/// Samples the resources of a soak every few seconds: each host process's working set, GC heap (its <c>/metrics</c>),
/// open file descriptors and threads (<c>/proc/&lt;pid&gt;</c>), the virtual host's broker connections and channels and
/// every queue's depth (management API), and the size of the sample's growing tables (<c>pg_total_relation_size</c>).
/// <see cref="Analyze"/> compares the first and the last tenth of each series after the warm-up and fits a slope per hour.
/// </summary>
public sealed class ResourceSampler(FaultRun run, Func<IReadOnlyList<(string Role, HostProcess Host)>> hosts, TimeSpan every)
{
    /// <summary>The tables whose size is sampled: the outbox, the inbox, the saga and its timeline, the message store, the orders.</summary>
    public static readonly string[] Tables = ["outbox_messages", "inbox_states", "order_fulfillment", "saga_timeline", "message_store", "orders"];

    readonly List<Sample> _samples = [];
    readonly DateTime _started = DateTime.UtcNow;

    /// <summary>One sampling: when, and the value of every series measured then (a series missing when it could not be read).</summary>
    public sealed record Sample(DateTime At, double ElapsedSeconds, IReadOnlyDictionary<string, double> Values);

    /// <summary>Every sample so far.</summary>
    public IReadOnlyList<Sample> Samples
    {
        get
        {
            lock (_samples)
                return [.. _samples];
        }
    }

    /// <summary>Samples until <paramref name="stop"/> is cancelled.</summary>
    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var at = DateTime.UtcNow;
            var values = new Dictionary<string, double>();
            foreach (var (role, host) in hosts())
                await SampleHostAsync(role, host, values).ConfigureAwait(false);
            await SampleBrokerAsync(values).ConfigureAwait(false);
            await SampleTablesAsync(values).ConfigureAwait(false);
            lock (_samples)
                _samples.Add(new Sample(at, (at - _started).TotalSeconds, values));
            try
            {
                await Task.Delay(every - (DateTime.UtcNow - at) is { Ticks: > 0 } wait ? wait : TimeSpan.Zero, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    static async Task SampleHostAsync(string role, HostProcess host, Dictionary<string, double> values)
    {
        if (host.HasExited)
            return;
        try
        {
            var pid = host.ProcessId;
            foreach (var line in await File.ReadAllLinesAsync($"/proc/{pid}/status").ConfigureAwait(false))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    values[$"{role}.working_set_mb"] = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
                else if (line.StartsWith("Threads:", StringComparison.Ordinal))
                    values[$"{role}.threads"] = double.Parse(line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            }

            values[$"{role}.open_fds"] = Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // Died between the check and the read (a SIGKILL fault): this sample has no value for it.
        }

        try
        {
            using var response = await host.Client.GetAsync(new Uri("/metrics", UriKind.Relative)).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                var metrics = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                if (Metric(metrics, "dotnet_gc_last_collection_heap_size_bytes", "process_runtime_dotnet_gc_heap_size_bytes") is { } heap)
                    values[$"{role}.gc_heap_mb"] = heap / (1024 * 1024);
                // The thread pool grows and shrinks with the load (hill climbing, starvation on a loaded machine); the threads outside
                // it (created per connection, per timer, per background loop) are the ones a leak adds.
                if (Metric(metrics, "dotnet_thread_pool_thread_count_total", "dotnet_thread_pool_thread_count", "process_runtime_dotnet_thread_pool_threads_count") is { } pool
                    && values.TryGetValue($"{role}.threads", out var threads))
                    values[$"{role}.non_pool_threads"] = Math.Max(0, threads - pool);
            }
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException)
        {
        }
    }

    /// <summary>
    /// The sum over all label sets of the first of <paramref name="names"/> found in the Prometheus text of the runtime instrumentation
    /// (the <c>System.Runtime</c> meter, e.g. <c>dotnet.gc.last_collection.heap.size</c>; older instrumentation names as fallback).
    /// </summary>
    static double? Metric(string metrics, params string[] names)
    {
        foreach (var name in names)
        {
            double? sum = null;
            foreach (var line in metrics.Split('\n'))
            {
                if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length == name.Length || (line[name.Length] != '{' && line[name.Length] != ' '))
                    continue;
                // name{labels} value [timestamp]
                var rest = line[name.Length] == '{' ? line[(line.IndexOf('}', StringComparison.Ordinal) + 1)..] : line[name.Length..];
                var value = rest.Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
                if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                    sum = (sum ?? 0) + v;
            }

            if (sum is not null)
                return sum;
        }

        return null;
    }

    async Task SampleBrokerAsync(Dictionary<string, double> values)
    {
        try
        {
            var infrastructure = await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
            var vhost = Uri.EscapeDataString(run.Broker.VirtualHost);
            values["broker.connections"] = await CountAsync(infrastructure, $"api/vhosts/{vhost}/connections?columns=name").ConfigureAwait(false);
            values["broker.channels"] = await CountAsync(infrastructure, $"api/vhosts/{vhost}/channels?columns=name").ConfigureAwait(false);
            using var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/queues/{vhost}?columns=name,messages").ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
            double total = 0;
            foreach (var queue in json.RootElement.EnumerateArray())
            {
                // The management API leaves "messages" out until its first stats emission for a new queue.
                var depth = queue.TryGetProperty("messages", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetDouble() : 0;
                values[$"queue.{queue.GetProperty("name").GetString()}"] = depth;
                total += depth;
            }

            values["broker.queued_messages"] = total;
        }
        catch (Exception exception) when (exception is HttpRequestException or TaskCanceledException or JsonException)
        {
        }
    }

    static async Task<double> CountAsync(IntegrationInfrastructure infrastructure, string path)
    {
        using var response = await infrastructure.ManagementRequest(HttpMethod.Get, path).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
        return json.RootElement.GetArrayLength();
    }

    async Task SampleTablesAsync(Dictionary<string, double> values)
    {
        try
        {
            // Straight to the database, never through the fault proxy.
            await using var connection = new NpgsqlConnection(run.Database.ConnectionString);
            await connection.OpenAsync().ConfigureAwait(false);
            await using var command = new NpgsqlCommand(
                "SELECT t, pg_total_relation_size(to_regclass(t)) FROM unnest(@tables) AS t WHERE to_regclass(t) IS NOT NULL", connection);
            command.Parameters.AddWithValue("tables", Tables);
            await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
            while (await reader.ReadAsync().ConfigureAwait(false))
                values[$"table.{reader.GetString(0)}_kb"] = reader.GetInt64(1) / 1024.0;
        }
        catch (NpgsqlException)
        {
        }
    }

    /// <summary>How one series behaved after the warm-up.</summary>
    public sealed record Trend(string Series, int Samples, double First, double Last, double Growth, double SlopePerHour, string Threshold, string Verdict, bool Leak);

    /// <summary>
    /// For every series: the medians of the first and the last tenth of its samples after <paramref name="warmUp"/> (at least two
    /// samples each), the least-squares slope per hour, and the verdict against the series' threshold (docs/reliability.md, Soak).
    /// </summary>
    public IReadOnlyList<Trend> Analyze(TimeSpan warmUp, IReadOnlyDictionary<string, string> notes, IReadOnlySet<string> withRetention)
    {
        ArgumentNullException.ThrowIfNull(notes);
        ArgumentNullException.ThrowIfNull(withRetention);
        var samples = Samples.Where(s => s.ElapsedSeconds >= warmUp.TotalSeconds).ToList();
        var names = samples.SelectMany(s => s.Values.Keys).Distinct().OrderBy(Order).ThenBy(n => n, StringComparer.Ordinal).ToList();
        var trends = new List<Trend>();
        foreach (var name in names)
        {
            var points = samples.Where(s => s.Values.ContainsKey(name)).Select(s => (X: s.ElapsedSeconds / 3600, Y: s.Values[name])).ToList();
            // Queues that never held anything are noise in the report.
            if (points.Count == 0 || (name.StartsWith("queue.", StringComparison.Ordinal) && points.All(p => p.Y == 0)))
                continue;
            var tenth = Math.Max(2, points.Count / 10);
            var first = Median(points.Take(tenth).Select(p => p.Y));
            // The broker's connections and channels dip while a fault holds the hosts off (a cut, a host between SIGKILL and restart):
            // a first tenth taken in a dip would make the recovery look like growth, so their baseline is also the warm-up's level.
            if (name is "broker.connections" or "broker.channels" && Samples.Where(s => s.ElapsedSeconds < warmUp.TotalSeconds && s.Values.ContainsKey(name))
                    .Select(s => s.Values[name]).ToList() is { Count: > 0 } early)
                first = Math.Max(first, Median(early));
            var last = Median(points.TakeLast(tenth).Select(p => p.Y));
            var slope = Slope(points);
            var growth = last - first;
            var (threshold, verdict, leak) = Judge(name, points, first, growth, notes, withRetention);
            trends.Add(new Trend(name, points.Count, first, last, growth, slope, threshold, verdict, leak));
        }

        return trends;
    }

    static int Order(string name) =>
        name.StartsWith("host", StringComparison.Ordinal) ? 0 : name.StartsWith("broker.", StringComparison.Ordinal) ? 1 : name.StartsWith("queue.", StringComparison.Ordinal) ? 2 : 3;

    /// <summary>
    /// The leak thresholds (docs/reliability.md, Soak): a series of a host that ran the whole soak, or of the broker, leaks when its last
    /// tenth is above its first by more than the allowance; a restarted host's series is reported, not judged; queues and tables are reported
    /// as bounded or as growth with the reason.
    /// </summary>
    static (string Threshold, string Verdict, bool Leak) Judge(string name, List<(double X, double Y)> points, double first, double growth,
        IReadOnlyDictionary<string, string> notes, IReadOnlySet<string> withRetention)
    {
        var restarted = name.StartsWith("host-restarted.", StringComparison.Ordinal);
        (double Allowed, string Text)? limit = name[(name.IndexOf('.', StringComparison.Ordinal) + 1)..] switch
        {
            "working_set_mb" when name.StartsWith("host", StringComparison.Ordinal) => (Math.Max(64, first * 0.3), "+max(64 MB, 30 %)"),
            "gc_heap_mb" => (Math.Max(32, first * 0.5), "+max(32 MB, 50 %)"),
            "open_fds" => (Math.Max(32, first * 0.3), "+max(32, 30 %)"),
            "non_pool_threads" => (Math.Max(16, first * 0.5), "+max(16, 50 %)"),
            "connections" when name.StartsWith("broker.", StringComparison.Ordinal) => (2, "+2"),
            "channels" when name.StartsWith("broker.", StringComparison.Ordinal) => (8, "+8"),
            _ => null,
        };
        if (limit is { } l)
        {
            if (restarted)
                return (l.Text, "not judged: the process is replaced by the SIGKILL fault (series restart)", false);
            return growth > l.Allowed
                ? (l.Text, $"LEAK: grew {growth:F1} after warm-up", true)
                : (l.Text, "ok", false);
        }

        if (name.EndsWith(".threads", StringComparison.Ordinal))
            return ("reported", "the thread pool follows the load; non_pool_threads is judged", false);

        if (name.StartsWith("queue.", StringComparison.Ordinal) || name == "broker.queued_messages")
            return growth > Math.Max(100, first)
                ? ("+max(100, 100 %)", "backlog grows (its consumers fall behind the traffic)", false)
                : ("+max(100, 100 %)", "bounded", false);

        // Tables: bounded when the second half of the run added little next to the first (a plateau: the cleanup deletes as much as is
        // written and PostgreSQL reuses the freed pages), else growth with the reason.
        var half = points.Count / 2;
        var firstHalf = points.Count > 3 ? points[half].Y - points[0].Y : 0;
        var secondHalf = points.Count > 3 ? points[^1].Y - points[half].Y : 0;
        var table = name.StartsWith("table.", StringComparison.Ordinal) ? name["table.".Length..^"_kb".Length] : name;
        const string plateau = "2nd half ≤ max(64 kB, ¼ of 1st half)";
        if (!withRetention.Contains(table))
            return ("no retention", growth > 0 ? $"grows by design: {(notes.TryGetValue(table, out var design) ? design : "no retention known")}" : "bounded", false);
        if (secondHalf <= Math.Max(64, firstHalf / 4))
            return (plateau, "bounded", false);
        return (plateau, $"grows: {(notes.TryGetValue(table, out var why) ? why : "no retention known")}", false);
    }

    static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    static double Slope(List<(double X, double Y)> points)
    {
        if (points.Count < 2)
            return 0;
        var mx = points.Average(p => p.X);
        var my = points.Average(p => p.Y);
        var sxx = points.Sum(p => (p.X - mx) * (p.X - mx));
        return sxx == 0 ? 0 : points.Sum(p => (p.X - mx) * (p.Y - my)) / sxx;
    }

    /// <summary>Every sample as CSV, one row per sample, one column per series (empty where a series had no value then).</summary>
    public string Csv()
    {
        var samples = Samples;
        var names = samples.SelectMany(s => s.Values.Keys).Distinct().OrderBy(Order).ThenBy(n => n, StringComparer.Ordinal).ToList();
        var csv = new StringBuilder("time_utc,elapsed_s");
        foreach (var name in names)
            csv.Append(',').Append(name);
        csv.Append('\n');
        foreach (var sample in samples)
        {
            csv.Append(sample.At.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)).Append(',')
                .Append(sample.ElapsedSeconds.ToString("F0", CultureInfo.InvariantCulture));
            foreach (var name in names)
            {
                csv.Append(',');
                if (sample.Values.TryGetValue(name, out var value))
                    csv.Append(value.ToString("0.###", CultureInfo.InvariantCulture));
            }

            csv.Append('\n');
        }

        return csv.ToString();
    }
}
