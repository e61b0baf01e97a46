using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Reliability.Tests.Support;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Faults;

/// <summary>
/// The fault suite on the local 3-node RabbitMQ cluster (<c>integration_cluster_start</c> in scripts/services.sh; ./test.sh
/// runs it in its cluster phase with <c>INTEGRATION_RABBITMQ_URI</c> on node 1 and <c>INTEGRATION_RABBITMQ_CLUSTER_NODES</c>
/// set): the host uses quorum queues and lists every node, the traffic and the observers use node 1, and the node the
/// host is connected to is SIGKILLed under load. Ignored when no cluster is named.
/// </summary>
[TestFixture]
[Category("Integration")]
[Category("Cluster")]
[NonParallelizable]
public sealed class ClusterFault_Specs
{
    static string? ClusterNodes => Environment.GetEnvironmentVariable("INTEGRATION_RABBITMQ_CLUSTER_NODES");

    static string ClusterDirectory => Environment.GetEnvironmentVariable("INTEGRATION_CLUSTER_DIR") ?? "/tmp/integration-rabbit-cluster";

    readonly List<int> _killed = [];

    [OneTimeTearDown]
    public async Task WriteTable()
    {
        await RestartKilledNodes();
        ReliabilityReport.Write("cluster");
    }

    async Task RestartKilledNodes()
    {
        foreach (var node in _killed)
            await Bash($". scripts/services.sh && integration_cluster_restart {node}");
        _killed.Clear();
    }

    [Test]
    public async Task When_the_broker_node_the_host_is_connected_to_is_SIGKILLed_under_load_should_lose_nothing_and_apply_no_effect_twice()
    {
        if (string.IsNullOrWhiteSpace(ClusterNodes))
            Assert.Ignore("no RabbitMQ cluster: INTEGRATION_RABBITMQ_CLUSTER_NODES is not set (./test.sh starts one with integration_cluster_start)");
        var nodes = ClusterNodes.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(nodes, Has.Length.EqualTo(3), "precondition: a 3-node cluster");

        var run = await FaultRun.CreateAsync("cluster-node-kill", proxyBroker: false, proxyDatabase: false);
        try
        {
            await KillConnectedNode(run, nodes);
        }
        finally
        {
            // Deleting the vhost waits for every quorum queue member: bring the killed node back first.
            await RestartKilledNodes();
            await run.DisposeAsync();
        }
    }

    async Task KillConnectedNode(FaultRun run, string[] nodes)
    {
        run.ExtraSettings["Integration:RabbitMq:QueueType"] = "Quorum";
        run.SinkQueueArguments = new Dictionary<string, object?> { ["x-queue-type"] = "quorum", ["x-delivery-limit"] = 10_000 };
        // Node 1 carries the test's own traffic and observers, so the host prefers the others: node 2 first.
        foreach (var (node, i) in nodes.Skip(1).Append(nodes[0]).Select((n, i) => (n, i)))
            run.ExtraSettings[$"Integration:RabbitMq:ClusterNodes:{i}"] = node;
        var host = await run.StartHostAsync();

        var before = await ConnectedNode(host.Client);
        Assert.That(before, Is.Not.EqualTo(nodes[0]).And.Not.Null, "precondition: the host is connected to a node other than the test's");
        var victim = Array.IndexOf(nodes, before) + 1;
        string? after = null;

        var report = await run.DriveAsync($"broker node SIGKILLed (quorum queues, {nodes.Length}-node cluster)", TimeSpan.FromSeconds(8), async _ =>
        {
            var pid = int.Parse(await File.ReadAllTextAsync(Path.Combine(ClusterDirectory, $"c{victim}", "pid")), System.Globalization.CultureInfo.InvariantCulture);
            Process.GetProcessById(pid).Kill();
            _killed.Add(victim);
            // Failed over: the host names another node.
            await Testing.Eventually.TrueAsync(async () => (after = await ConnectedNode(host.Client)) is { } n && n != before, TimeSpan.FromSeconds(30));
        }, TimeSpan.FromSeconds(60));

        ReliabilityReport.Add(report);
        TestContext.Out.WriteLine(ReliabilityReport.Header);
        foreach (var row in report.Rows())
            TestContext.Out.WriteLine(row);
        TestContext.Out.WriteLine(report.ToString());
        if (report.Details.Count > 0)
            TestContext.Out.WriteLine(run.HostOutput());
        Assert.Multiple(() =>
        {
            Assert.That(after, Is.Not.Null.And.Not.EqualTo(before), "the host did not fail over to another node");
            Assert.That(report.Orders.Sent, Is.GreaterThan(5), "precondition: orders flowed");
            Assert.That(report.Parts.Sent, Is.GreaterThan(50), "precondition: parts requests flowed");
            Assert.That(report.Orders.Lost + report.Parts.Lost, Is.Zero, "lost");
            Assert.That(report.Orders.DuplicatedEffects + report.Parts.DuplicatedEffects, Is.Zero, "duplicated effects");
            Assert.That(report.Orders.SagasFinal, Is.EqualTo(report.Orders.Sent), "sagas final");
            Assert.That(report.Details, Is.Empty, "unexplained");
        });
    }

    static async Task<string?> ConnectedNode(HttpClient client)
    {
        try
        {
            var ready = await client.GetFromJsonAsync<JsonElement>("/health/ready");
            return ready.GetProperty("checks").GetProperty("rabbitmq").GetProperty("data").TryGetProperty("node", out var node) && node.GetString() is { } n && n != "not connected" ? n : null;
        }
        catch (Exception exception) when (exception is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return null;
        }
    }

    static async Task Bash(string script)
    {
        var root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "test.sh")))
            root = Path.GetDirectoryName(root);
        using var process = Process.Start(new ProcessStartInfo("bash", ["-c", script]) { WorkingDirectory = root ?? ".", RedirectStandardError = true })
            ?? throw new InvalidOperationException("could not run bash");
        await process.WaitForExitAsync();
    }
}
