using System.Globalization;
using System.Text;
using Integration.Reliability.Tests.Support;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Faults;

/// <summary>
/// The measuring soak (<c>./soak.sh --minutes N</c>, <c>INTEGRATION_SOAK_MINUTES=N</c>): orders and parts requests flow for N minutes
/// through two hosts on one vhost and database, with a fault every few minutes in rotation (the second host SIGKILLed and restarted,
/// the broker cut, the database cut; with <c>INTEGRATION_SOAK_RESTART_SERVICES=1</c> also real restarts). Besides the accounting it
/// samples the resources every ~10 s (<see cref="ResourceSampler"/>) and fails on a leak: memory, handles, threads, broker
/// connections or channels of what ran the whole time growing beyond the documented thresholds after the warm-up
/// (docs/reliability.md, Soak). Report: <c>TestResults/reliability/soak.md</c> and <c>soak-resources.csv</c>. Ignored unless the
/// variable is set.
/// </summary>
[TestFixture]
[Category("Integration")]
[Category("Soak")]
[NonParallelizable]
public sealed class Soak_Specs
{
    /// <summary>Delivered outbox rows and inbox rows are kept this long in the soak, so the cleanup runs within the soak and the tables can plateau.</summary>
    static readonly TimeSpan Retention = TimeSpan.FromMinutes(2);

    static readonly TimeSpan CleanupInterval = TimeSpan.FromSeconds(30);

    static double? Minutes =>
        double.TryParse(Environment.GetEnvironmentVariable("INTEGRATION_SOAK_MINUTES"), NumberStyles.Float, CultureInfo.InvariantCulture, out var m) && m > 0 ? m : null;

    static TimeSpan SampleEvery =>
        TimeSpan.FromSeconds(int.TryParse(Environment.GetEnvironmentVariable("INTEGRATION_SOAK_SAMPLE_SECONDS"), CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 10);

    /// <summary>The fault interval: <c>INTEGRATION_SOAK_FAULT_EVERY_SECONDS</c>, else a sixth of the run, between 30 s and 3 min.</summary>
    static TimeSpan FaultEvery(TimeSpan duration) =>
        int.TryParse(Environment.GetEnvironmentVariable("INTEGRATION_SOAK_FAULT_EVERY_SECONDS"), CultureInfo.InvariantCulture, out var s) && s > 0
            ? TimeSpan.FromSeconds(s)
            : TimeSpan.FromSeconds(Math.Clamp(duration.TotalSeconds / 6, 30, 180));

    static bool RestartServices => Environment.GetEnvironmentVariable("INTEGRATION_SOAK_RESTART_SERVICES") == "1";

    [Test]
    public async Task When_orders_and_parts_flow_for_minutes_under_rotating_faults_should_lose_nothing_apply_nothing_twice_and_leak_nothing()
    {
        if (Minutes is not { } minutes)
        {
            Assert.Ignore("the measuring soak runs with INTEGRATION_SOAK_MINUTES=N (./soak.sh --minutes N)");
            return;
        }

        var duration = TimeSpan.FromMinutes(minutes);
        var every = FaultEvery(duration);
        var warmUp = TimeSpan.FromSeconds(Math.Max(60, duration.TotalSeconds / 10));

        await using var run = await FaultRun.CreateAsync("soak", proxyBroker: true, proxyDatabase: true);
        run.ExtraSettings["Integration:Outbox:RetentionPeriod"] = Retention.ToString();
        run.ExtraSettings["Integration:Outbox:InboxRetention"] = Retention.ToString();
        run.ExtraSettings["Integration:Outbox:CleanupInterval"] = CleanupInterval.ToString();
        // One host runs the whole soak (its series are judged for leaks); the other is the one the SIGKILL fault replaces.
        var stable = await run.StartHostAsync();
        await run.StartHostAsync();
        IReadOnlyList<(string, HostProcess)> Hosts() => [.. run.Hosts.Select(h => (h == stable ? "host-stable" : "host-restarted", h))];
        var sampler = new ResourceSampler(run, Hosts, SampleEvery);
        using var stopSampling = new CancellationTokenSource();
        var sampling = Task.Run(() => sampler.RunAsync(stopSampling.Token));

        var rotation = new List<(string Name, Func<Task> Inject)>
        {
            ("host SIGKILLed, restarted", async () =>
            {
                var victim = run.Hosts.First(h => h != stable);
                run.Kill(victim);
                await Task.Delay(TimeSpan.FromSeconds(1));
                await run.StartHostAsync(victim.Port, waitUntilReady: false);
            }),
            ("RabbitMQ outage (TCP cut, 5 s)", async () =>
            {
                run.BrokerProxy!.Disconnect();
                await Task.Delay(TimeSpan.FromSeconds(5));
                run.BrokerProxy.Reconnect();
            }),
            ("PostgreSQL outage (TCP cut, 4 s)", async () =>
            {
                run.DatabaseProxy!.Disconnect();
                await Task.Delay(TimeSpan.FromSeconds(4));
                run.DatabaseProxy.Reconnect();
            }),
        };
        if (RestartServices)
        {
            rotation.Add(("RabbitMQ restarted", async () =>
            {
                await FaultInjection_Specs.Run("rabbitmqctl", "stop_app");
                await Task.Delay(TimeSpan.FromSeconds(3));
                await FaultInjection_Specs.Run("rabbitmqctl", "start_app");
            }));
            rotation.Add(("PostgreSQL restarted", async () =>
            {
                var version = Directory.GetDirectories("/etc/postgresql").Select(Path.GetFileName).OrderBy(v => v, StringComparer.Ordinal).Last();
                await FaultInjection_Specs.Run("pg_ctlcluster", $"{version} {Environment.GetEnvironmentVariable("INTEGRATION_SOAK_PG_CLUSTER") ?? "main"} restart -m fast");
            }));
        }

        var injected = new List<string>();
        var started = DateTime.UtcNow;
        var report = await run.DriveAsync($"soak {minutes:0.#} min, rotating faults", duration, async _ =>
        {
            var (name, inject) = rotation[injected.Count % rotation.Count];
            injected.Add($"{(DateTime.UtcNow - started).TotalSeconds:F0} s: {name}");
            await inject();
        }, TimeSpan.FromSeconds(120), every, firstFaultAt: every, trafficStopped: stopSampling.Cancel,
            // The last 15 % of the run carries traffic without faults: the last tenth of every series is measured on a recovered system.
            faultsUntil: TimeSpan.FromTicks(duration.Ticks * 85 / 100));
        await sampling;

        var notes = new Dictionary<string, string>
        {
            ["orders"] = "one row per accepted order; the sample keeps orders (no retention)",
            ["order_fulfillment"] = "one saga row per order; final sagas are kept (the sample has no saga retention)",
            ["saga_timeline"] = "one row per saga step, an instance's rows deleted once it was quiet for Integration:Operations:Sagas:TimelineRetentionDays (30 days: not within a soak)",
            ["message_store"] = "every stored message is kept (the message store has no retention)",
            ["outbox_messages"] = $"delivered rows are kept for Integration:Outbox:RetentionPeriod ({Retention}) and deleted every {CleanupInterval}; the table plateaus only once the run is well past the retention (freed pages are reused after autovacuum, the file does not shrink)",
            ["inbox_states"] = $"rows are kept for Integration:Outbox:InboxRetention ({Retention}), deleted every {CleanupInterval}; plateaus once the run is well past the retention",
        };
        var trends = sampler.Analyze(warmUp, notes, new HashSet<string> { "outbox_messages", "inbox_states" });
        var leaks = trends.Where(t => t.Leak).ToList();
        var summary = Write(report, trends, sampler, injected, duration, every, warmUp);
        TestContext.Out.WriteLine(summary);
        if (report.Details.Count > 0)
            TestContext.Out.WriteLine(run.HostOutput());

        Assert.Multiple(() =>
        {
            Assert.That(report.Orders.Sent, Is.GreaterThan(5), "precondition: orders flowed");
            Assert.That(report.Parts.Sent, Is.GreaterThan(50), "precondition: parts requests flowed");
            Assert.That(sampler.Samples, Has.Count.GreaterThan(3), "precondition: resources were sampled");
            Assert.That(report.Orders.Lost, Is.Zero, "orders lost");
            Assert.That(report.Parts.Lost, Is.Zero, "parts requests lost");
            Assert.That(report.Orders.DuplicatedEffects + report.Parts.DuplicatedEffects, Is.Zero, "duplicated effects");
            Assert.That(report.Orders.SagasFinal, Is.EqualTo(report.Orders.Delivered), "every saga final");
            Assert.That(report.Orders.OrderViolations ?? 0, Is.Zero, "saga steps out of the protocol's order (per order id)");
            Assert.That(report.Details, Is.Empty, "every message accounted for (no unexplained loss, duplicate or stuck saga)");
            if (KnownIssues.Strict)
                Assert.That(report.Known, Is.Empty, "known issues (INTEGRATION_RELIABILITY_STRICT=1)");
            Assert.That(leaks.Select(l => $"{l.Series}: {l.First:F1} → {l.Last:F1} ({l.Threshold})"), Is.Empty, "resource leaks after warm-up");
        });
    }

    static string Write(FaultReport report, IReadOnlyList<ResourceSampler.Trend> trends, ResourceSampler sampler, List<string> injected,
        TimeSpan duration, TimeSpan every, TimeSpan warmUp)
    {
        var directory = ReliabilityReport.Directory();
        Directory.CreateDirectory(directory);
        var csv = Path.Combine(directory, "soak-resources.csv");
        File.WriteAllText(csv, sampler.Csv());

        var md = new StringBuilder();
        md.Append(CultureInfo.InvariantCulture, $"# Soak ({duration.TotalMinutes:0.#} min of traffic, a fault every {every.TotalSeconds:F0} s, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores)\n\n");
        md.Append("## Accounting\n\n").Append(ReliabilityReport.Header).Append('\n');
        foreach (var row in report.Rows())
            md.Append(row).Append('\n');
        md.Append('\n').Append(report.ToString()).Append("\n\n");
        md.Append(CultureInfo.InvariantCulture, $"Faults injected ({injected.Count}): {string.Join("; ", injected)}\n\n");
        md.Append(CultureInfo.InvariantCulture, $"## Resources ({sampler.Samples.Count} samples; warm-up {warmUp.TotalSeconds:F0} s excluded; first/last = median of the first/last tenth after it)\n\n");
        md.Append("| series | samples | first tenth | last tenth | growth | slope per hour | threshold | verdict |\n| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
        foreach (var t in trends)
            md.Append(CultureInfo.InvariantCulture, $"| {t.Series} | {t.Samples} | {t.First:0.#} | {t.Last:0.#} | {t.Growth:+0.#;-0.#;0} | {t.SlopePerHour:+0.#;-0.#;0} | {t.Threshold} | {t.Verdict} |\n");
        var leaks = trends.Count(t => t.Leak);
        md.Append(CultureInfo.InvariantCulture, $"\n{(leaks == 0 ? "No leak" : $"{leaks} LEAK(S)")}; series: {Path.GetFileName(csv)} (units in the names: _mb, _kb; counts otherwise)\n");
        var text = md.ToString();
        File.WriteAllText(Path.Combine(directory, "soak.md"), text);
        return text;
    }
}
