using System.Globalization;
using System.Text.Json;
using Integration.Testing;
using Integration.Testing.Faults;
using Npgsql;

namespace Integration.Reliability.Tests.Support;

/// <summary>
/// One fault scenario on its own virtual host and database: the sample host(s) as child processes, optionally behind TCP
/// proxies to the broker and the database, a device publishing parts requests, a client posting orders, an observer of
/// the saga's effects and a sink on the route's outputs. <see cref="DriveAsync"/> runs the traffic, injects the fault,
/// waits for the system to settle and accounts for every message.
/// </summary>
public sealed class FaultRun : IAsyncDisposable
{
    static readonly string[] FinalStates = ["Completed", "Failed"];

    /// <summary>Settling stops early when nothing has moved for this long: what is not final by then is stuck. Long enough for MassTransit to reconnect after a broker cut on a loaded 2-core machine.</summary>
    static readonly TimeSpan StuckAfter = TimeSpan.FromSeconds(30);

    readonly List<HostProcess> _hosts = [];
    readonly object _gate = new();
    IReadOnlyList<HttpClient> _clients = [];

    FaultRun(TestBroker broker, TestDatabase database, TcpProxy? brokerProxy, TcpProxy? databaseProxy)
    {
        Broker = broker;
        Database = database;
        BrokerProxy = brokerProxy;
        DatabaseProxy = databaseProxy;
    }

    /// <summary>This scenario's virtual host.</summary>
    public TestBroker Broker { get; }

    /// <summary>This scenario's database.</summary>
    public TestDatabase Database { get; }

    /// <summary>Between the hosts and RabbitMQ, when the scenario cuts the broker.</summary>
    public TcpProxy? BrokerProxy { get; }

    /// <summary>Between the hosts and PostgreSQL, when the scenario cuts the database.</summary>
    public TcpProxy? DatabaseProxy { get; }

    /// <summary>The running hosts (a killed host is removed, its replacement added).</summary>
    public IReadOnlyList<HostProcess> Hosts
    {
        get
        {
            lock (_gate)
                return [.. _hosts];
        }
    }

    /// <summary>Creates the vhost, the database and the proxies the scenario asks for.</summary>
    public static async Task<FaultRun> CreateAsync(string name, bool proxyBroker, bool proxyDatabase)
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
        var broker = await infrastructure.CreateVirtualHostAsync(name).ConfigureAwait(false);
        var database = await infrastructure.CreateDatabaseAsync(name.Replace('-', '_')).ConfigureAwait(false);
        var brokerProxy = proxyBroker ? TcpProxy.Start(broker.Host, broker.Port) : null;
        TcpProxy? databaseProxy = null;
        if (proxyDatabase)
        {
            var target = new NpgsqlConnectionStringBuilder(database.ConnectionString);
            databaseProxy = TcpProxy.Start(target.Host!, target.Port);
        }

        return new FaultRun(broker, database, brokerProxy, databaseProxy);
    }

    /// <summary>Arguments of the destination queues the sink declares: the hosts' (quorum queues need theirs).</summary>
    public IDictionary<string, object?>? SinkQueueArguments { get; set; }

    /// <summary>Settings every host of this scenario gets on top of <see cref="HostSettings"/> (a cluster's nodes, the queue type).</summary>
    public Dictionary<string, string?> ExtraSettings { get; } = [];

    /// <summary>The host's settings: this scenario's vhost and database, through the proxies when there are any.</summary>
    public Dictionary<string, string?> HostSettings()
    {
        var settings = new Dictionary<string, string?>(Broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = Database.ConnectionString,
            ["Integration:RabbitMq:HeartbeatSeconds"] = "5",
            // A dead relay's claim is taken over after the lease; keep both short so a crash heals within the run.
            ["Integration:Outbox:SendTimeout"] = "00:00:03",
            ["Integration:Outbox:LockDuration"] = "00:00:10",
            ["Integration:Host:ShutdownTimeoutSeconds"] = "5",
            ["Logging:LogLevel:Default"] = "Warning",
            ["Logging:LogLevel:Microsoft.Hosting.Lifetime"] = "Information",
            ["Logging:LogLevel:Integration"] = "Information",
        };
        if (BrokerProxy is not null)
        {
            settings["Integration:RabbitMq:Host"] = "127.0.0.1";
            settings["Integration:RabbitMq:Port"] = BrokerProxy.Port.ToString(CultureInfo.InvariantCulture);
        }

        if (DatabaseProxy is not null)
        {
            settings["Integration:Postgres:ConnectionString"] = new NpgsqlConnectionStringBuilder(Database.ConnectionString)
            {
                Host = "127.0.0.1",
                Port = DatabaseProxy.Port,
                // A cut connection must fail fast rather than hang the consumer for the default 30 s.
                Timeout = 5,
                CommandTimeout = 10,
            }.ConnectionString;
        }

        foreach (var (key, value) in ExtraSettings)
            settings[key] = value;
        return settings;
    }

    /// <summary>Starts a host process (on <paramref name="port"/> when restarting one) and, unless told otherwise, waits until it is ready.</summary>
    public async Task<HostProcess> StartHostAsync(int? port = null, bool waitUntilReady = true)
    {
        // Not waiting (a restart under load): the traffic finds the host when it answers, and the accounting catches one that never does.
        var host = await HostProcess.StartAsync("Integration.Host.dll", HostSettings(), port, waitUntilLive: waitUntilReady).ConfigureAwait(false);
        lock (_gate)
        {
            _hosts.Add(host);
            _clients = [.. _hosts.Select(h => h.Client)];
        }

        if (waitUntilReady && !await host.WaitUntilAsync("/health/ready", TimeSpan.FromSeconds(60)).ConfigureAwait(false))
            throw new InvalidOperationException($"host on {host.Address} never became ready; its output:\n{host.Output}");
        if (waitUntilReady)
        {
            // Warm the order endpoints (routing, EF model, connection pool) so the first orders do not wait for it.
            using var warm = await host.Client.GetAsync(new Uri($"/api/orders/{Guid.NewGuid()}", UriKind.Relative)).ConfigureAwait(false);
        }

        return host;
    }

    /// <summary>SIGKILLs <paramref name="host"/> and takes it out of the traffic.</summary>
    public void Kill(HostProcess host)
    {
        ArgumentNullException.ThrowIfNull(host);
        lock (_gate)
        {
            _hosts.Remove(host);
            _clients = _hosts.Count == 0 ? [host.Client] : [.. _hosts.Select(h => h.Client)];
        }

        host.Kill();
        _killed.Add(host);
    }

    readonly List<HostProcess> _killed = [];

    /// <summary>
    /// Drives orders and parts requests for <paramref name="duration"/>, running <paramref name="fault"/> once at the first third
    /// (and again every <paramref name="repeatEvery"/> in a soak), waits up to <paramref name="settle"/> for every order's saga
    /// to end and every request to arrive, then accounts for everything. A soak puts the first fault at <paramref name="firstFaultAt"/>,
    /// injects none after <paramref name="faultsUntil"/> (so the end of the run is measured on a recovered system) and hears through
    /// <paramref name="trafficStopped"/> when the traffic ends (before the settling).
    /// </summary>
    public async Task<FaultReport> DriveAsync(string faultName, TimeSpan duration, Func<CancellationToken, Task> fault, TimeSpan settle,
        TimeSpan? repeatEvery = null, TimeSpan? firstFaultAt = null, Action? trafficStopped = null, TimeSpan? faultsUntil = null)
    {
        ArgumentNullException.ThrowIfNull(fault);
        await using var observer = await EffectObserver.StartAsync(Broker).ConfigureAwait(false);
        await using var sink = await PartsSink.StartAsync(Broker.AmqpUri, SinkQueueArguments).ConfigureAwait(false);
        var orders = new OrderTraffic(() => Volatile.Read(ref _clients), TimeSpan.FromMilliseconds(150));
        var parts = new PartsTraffic(Broker.AmqpUri, TimeSpan.FromMilliseconds(25));

        using var stop = new CancellationTokenSource();
        using var giveUp = new CancellationTokenSource();
        var started = DateTime.UtcNow;
        var ordersTask = Task.Run(() => orders.RunAsync(stop.Token, giveUp.Token));
        var partsTask = Task.Run(() => parts.RunAsync(stop.Token));

        var faults = 0;
        var next = firstFaultAt ?? TimeSpan.FromTicks(duration.Ticks / 3);
        while (true)
        {
            var wait = started + next - DateTime.UtcNow;
            if (wait > TimeSpan.Zero)
                await Task.Delay(wait).ConfigureAwait(false);
            // Under load the first orders are slow: fault a system that is carrying traffic, not one still warming up.
            if (faults == 0)
                await Eventually.TrueAsync(() => Task.FromResult(orders.Accepted.Count >= 10), TimeSpan.FromSeconds(20)).ConfigureAwait(false);
            await fault(CancellationToken.None).ConfigureAwait(false);
            faults++;
            if (repeatEvery is null || DateTime.UtcNow - started + repeatEvery.Value >= (faultsUntil ?? duration))
                break;
            next = DateTime.UtcNow - started + repeatEvery.Value;
        }

        var remaining = started + duration - DateTime.UtcNow;
        // Traffic after the (last) fault, on the recovered system: the rest of the time, and at least a few orders more.
        var acceptedAtRecovery = orders.Accepted.Count;
        await Task.Delay(remaining > TimeSpan.FromSeconds(3) ? remaining : TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        await Eventually.TrueAsync(() => Task.FromResult(orders.Accepted.Count >= acceptedAtRecovery + 5), TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        await stop.CancelAsync().ConfigureAwait(false);
        trafficStopped?.Invoke();
        giveUp.CancelAfter(TimeSpan.FromSeconds(30));
        await Task.WhenAll(ordersTask, partsTask).ConfigureAwait(false);
        var trafficTime = DateTime.UtcNow - started;

        // Settle: every accepted order's saga in a final state, every confirmed request in its queue and in audit.
        var sagas = new Dictionary<Guid, (string State, string[] Steps)>();
        var settleStarted = DateTime.UtcNow;
        var lastProgress = (Signature: "", At: DateTime.UtcNow);
        await Eventually.TrueAsync(async () =>
        {
            sagas = await ReadSagasAsync().ConfigureAwait(false);
            var sagasDone = orders.Accepted.Keys.All(id => sagas.TryGetValue(id, out var s) && FinalStates.Contains(s.State)
                && observer.Distinct(id, "outcome") > 0);
            var partsDone = parts.Confirmed.All(p => sink.Arrivals.TryGetValue(p.Key, out var queues) && queues.Contains(p.Value) && queues.Contains("audit"));
            if (sagasDone && partsDone)
                return true;

            // Stuck rather than slow: nothing moved for a while (sagas step in milliseconds; redelivery retries end within 7 s).
            var signature = $"{sagas.Count}:{string.Join(',', sagas.Values.Select(s => s.Steps.Length).Sum())}:{sink.Arrivals.Count}:{sink.Arrivals.Values.Sum(q => q.Count)}";
            if (signature != lastProgress.Signature)
                lastProgress = (signature, DateTime.UtcNow);
            return DateTime.UtcNow - lastProgress.At > StuckAfter;
        }, settle, TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
        // Late copies (a redelivery after a reconnect) would arrive now: give them a moment to show up.
        await Task.Delay(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        sagas = await ReadSagasAsync().ConfigureAwait(false);
        var settleTime = DateTime.UtcNow - settleStarted;

        var report = new FaultReport(faultName, faults, trafficTime, settleTime) { ErrorQueues = await ErrorQueuesAsync().ConfigureAwait(false) };
        var storedOrders = await CountAsync("SELECT count(*) FROM orders").ConfigureAwait(false);
        var undelivered = await CountAsync("SELECT count(*) FROM outbox_messages WHERE delivered_at IS NULL").ConfigureAwait(false);

        // Orders: HTTP → outbox → OrderSubmitted → saga → reservation, purchase order, outcome.
        var o = report.Orders;
        o.Sent = orders.Accepted.Count;
        o.OrderViolations = sagas.Count > 0 ? 0 : null;
        foreach (var (orderId, failing) in orders.Accepted)
        {
            if (!sagas.TryGetValue(orderId, out var saga))
            {
                o.Lost++;
                report.Details.Add($"order {orderId}: accepted, no saga (OrderSubmitted never consumed)");
                continue;
            }

            o.Delivered++;
            if (FinalStates.Contains(saga.State))
                o.SagasFinal++;
            else if (observer.Distinct(orderId, $"command:{saga.State}") == 0 && saga.State != "AwaitingApproval")
                report.Known.Add($"[{KnownIssues.SagaPublishAfterCommit}] order {orderId}: saga stuck in {saga.State} after [{string.Join(", ", saga.Steps)}]; the state was committed, the command it sends in that state never was");
            else
                report.Details.Add($"order {orderId}: saga stuck in {saga.State} after [{string.Join(", ", saga.Steps)}]");
            var expected = failing ? "Failed" : "Completed";
            if (FinalStates.Contains(saga.State) && saga.State != expected)
                report.Details.Add($"order {orderId}: ended {saga.State}, expected {expected} [{string.Join(", ", saga.Steps)}]");

            // Per order (the partition key): every step after the steps that precede it in the protocol.
            var outOfOrder = OutOfOrderSteps(saga.Steps);
            if (outOfOrder > 0)
            {
                o.OrderViolations = (o.OrderViolations ?? 0) + outOfOrder;
                report.Details.Add($"order {orderId}: {outOfOrder} saga step(s) out of the protocol's order [{string.Join(", ", saga.Steps)}]");
            }

            var repeatedSteps = saga.Steps.Length - saga.Steps.Distinct().Count();
            var reservations = observer.Distinct(orderId, "reserved");
            var purchaseOrders = observer.Distinct(orderId, "purchase-order");
            var outcomes = observer.Distinct(orderId, "outcome");
            var twice = repeatedSteps + Math.Max(0, reservations - 1) + Math.Max(0, purchaseOrders - 1) + Math.Max(0, outcomes - 1);
            if (twice > 0)
            {
                o.DuplicatedEffects += twice;
                var line = $"order {orderId}: effect applied twice (steps [{string.Join(", ", saga.Steps)}], reservations {reservations}, purchase orders {purchaseOrders}, outcomes {outcomes})";
                if (repeatedSteps == 0 && outcomes <= 1)
                    report.Known.Add($"[{KnownIssues.SimulatedServicesNotIdempotent}] {line}");
                else
                    report.Details.Add(line);
            }

            if (FinalStates.Contains(saga.State) && outcomes == 0)
            {
                o.Lost++;
                report.Details.Add($"order {orderId}: saga {saga.State} but its outcome event never arrived");
            }

            o.RedeliveredCopies += observer.Redelivered(orderId);
        }

        o.Extra = $"orders stored {storedOrders}, outbox undelivered {undelivered}, HTTP attempts {orders.Attempts} ({orders.FailedAttempts} retried, last: {orders.LastFailure})";
        if (storedOrders != o.Sent)
            report.Details.Add($"orders table holds {storedOrders} rows for {o.Sent} accepted orders");

        // Parts: device → parts-requests → route → destination queue, wire-tapped to audit.
        var p = report.Parts;
        p.Sent = parts.Confirmed.Count;
        foreach (var (requestId, destination) in parts.Confirmed)
        {
            var arrivals = sink.Arrivals.TryGetValue(requestId, out var queues) ? queues.ToList() : [];
            var routed = arrivals.Where(q => q != "audit").ToList();
            var audited = arrivals.Count(q => q == "audit");
            if (!routed.Contains(destination) || audited == 0)
            {
                p.Lost++;
                report.Details.Add($"request {requestId}: expected in {destination} and audit, arrived in [{string.Join(", ", arrivals)}]");
                if (!routed.Contains(destination))
                    continue;
            }

            p.Delivered++;
            var wrong = routed.Where(q => q != destination).Distinct().Count();
            if (wrong > 0)
            {
                p.DuplicatedEffects += wrong;
                report.Details.Add($"request {requestId}: also routed to [{string.Join(", ", routed.Where(q => q != destination))}]");
            }

            p.RedeliveredCopies += Math.Max(0, routed.Count(q => q == destination) - 1) + Math.Max(0, audited - 1);
        }

        // Per device: the route has no ordering promise (competing consumers, redelivery after a cut), so this is measured, not required.
        p.OrderViolations = sink.SequencedArrivals > 0 ? sink.OrderViolations : null;
        var unknown = sink.Arrivals.Keys.Count(k => !parts.Confirmed.ContainsKey(k));
        p.Extra = unknown > 0 ? $"{unknown} request(s) arrived whose publish the broker never confirmed (not counted as sent)" : "";

        foreach (var (queue, count) in report.ErrorQueues)
        {
            // Refused redeliveries of saga events are the visible trace of the two known issues; anything else is unexplained.
            if (queue == "order-fulfillment_error" && report.Known.Count > 0)
                continue;
            report.Details.Add($"{count} message(s) left in {queue}");
        }

        return report;
    }

    /// <summary>The fulfillment protocol's order of saga steps (alternatives share a rank): a step never follows one ranked after it.</summary>
    static readonly Dictionary<string, int> StepRank = new(StringComparer.Ordinal)
    {
        ["Submitted"] = 0,
        ["PartsReserved"] = 1,
        ["PartsReservationFailed"] = 1,
        ["ApprovalRequested"] = 2,
        ["Approved"] = 3,
        ["Rejected"] = 3,
        ["ApprovalTimedOut"] = 3,
        ["PurchaseOrderCreated"] = 4,
        ["PurchaseOrderFailed"] = 4,
        ["InventoryUpdated"] = 5,
        ["InventoryUpdateFailed"] = 5,
        ["PurchaseOrderCancelled"] = 6,
        ["ReservationReleased"] = 7,
    };

    /// <summary>Steps applied after a step ranked later in the protocol (an event of the order handled before one that precedes it).</summary>
    static int OutOfOrderSteps(string[] steps)
    {
        var violations = 0;
        var highest = -1;
        foreach (var step in steps)
        {
            if (!StepRank.TryGetValue(step, out var rank))
                continue;
            if (rank < highest)
                violations++;
            highest = Math.Max(highest, rank);
        }

        return violations;
    }

    async Task<Dictionary<Guid, (string State, string[] Steps)>> ReadSagasAsync()
    {
        var sagas = new Dictionary<Guid, (string, string[])>();
        await using var connection = new NpgsqlConnection(Database.ConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var exists = new NpgsqlCommand("SELECT to_regclass('order_fulfillment') IS NOT NULL", connection);
        if (!(bool)(await exists.ExecuteScalarAsync().ConfigureAwait(false))!)
            return sagas;
        await using var command = new NpgsqlCommand("SELECT correlation_id, current_state, steps FROM order_fulfillment", connection);
        await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
        while (await reader.ReadAsync().ConfigureAwait(false))
            sagas[reader.GetGuid(0)] = (reader.GetString(1), reader.GetFieldValue<string[]>(2));
        return sagas;
    }

    async Task<long> CountAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(Database.ConnectionString);
        await connection.OpenAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand(sql, connection);
        return (long)(await command.ExecuteScalarAsync().ConfigureAwait(false))!;
    }

    /// <summary>Messages in every <c>_error</c> and <c>_skipped</c> queue of the vhost (exact counts, by passive declare).</summary>
    async Task<Dictionary<string, long>> ErrorQueuesAsync()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
        using var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/queues/{Uri.EscapeDataString(Broker.VirtualHost)}?columns=name")
            .ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
        var counts = new Dictionary<string, long>();
        foreach (var queue in json.RootElement.EnumerateArray().Select(q => q.GetProperty("name").GetString()!))
        {
            if (queue.EndsWith("_error", StringComparison.Ordinal) || queue.EndsWith("_skipped", StringComparison.Ordinal))
            {
                var count = await Broker.QueueMessageCountAsync(queue).ConfigureAwait(false) ?? 0;
                if (count > 0)
                    counts[queue] = count;
            }
        }

        return counts;
    }

    /// <summary>
    /// The consumers of each queue whose name starts with <paramref name="prefix"/> (the partition queues, single active consumer):
    /// queue → the process id of the active consumer's host (null when none) and of every consumer, read from the management API
    /// (the consumer's connection carries MassTransit's <c>process_id</c> client property).
    /// </summary>
    public async Task<Dictionary<string, (int? Active, int[] All)>> PartitionConsumersAsync(string prefix)
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync().ConfigureAwait(false);
        var vhost = Uri.EscapeDataString(Broker.VirtualHost);
        var pids = new Dictionary<string, int>(StringComparer.Ordinal);
        using (var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/vhosts/{vhost}/connections").ConfigureAwait(false))
        {
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
            foreach (var connection in json.RootElement.EnumerateArray())
            {
                if (connection.TryGetProperty("client_properties", out var properties) && properties.TryGetProperty("process_id", out var pid)
                    && int.TryParse(pid.GetString(), CultureInfo.InvariantCulture, out var id))
                    pids[connection.GetProperty("name").GetString()!] = id;
            }
        }

        var result = new Dictionary<string, (int?, int[])>(StringComparer.Ordinal);
        using (var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/queues/{vhost}").ConfigureAwait(false))
        {
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
            foreach (var queue in json.RootElement.EnumerateArray())
            {
                var name = queue.GetProperty("name").GetString()!;
                if (!name.StartsWith(prefix, StringComparison.Ordinal) || name.EndsWith("_error", StringComparison.Ordinal) || name.EndsWith("_skipped", StringComparison.Ordinal))
                    continue;
                result[name] = (null, []);
            }
        }

        foreach (var name in result.Keys.ToList())
        {
            using var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/queues/{vhost}/{Uri.EscapeDataString(name)}").ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync().ConfigureAwait(false));
            int? active = null;
            var all = new List<int>();
            if (json.RootElement.TryGetProperty("consumer_details", out var consumers))
            {
                foreach (var consumer in consumers.EnumerateArray())
                {
                    var connection = consumer.GetProperty("channel_details").TryGetProperty("connection_name", out var c) ? c.GetString() : null;
                    if (connection is null || !pids.TryGetValue(connection, out var pid))
                        continue;
                    all.Add(pid);
                    if (consumer.TryGetProperty("active", out var a) && a.ValueKind == JsonValueKind.True)
                        active = pid;
                }
            }

            result[name] = (active, [.. all.Distinct()]);
        }

        return result;
    }

    /// <summary>Everything the hosts wrote (for diagnosing a failed run).</summary>
    public string HostOutput(int tail = 6000)
    {
        var all = string.Join("\n----\n", _killed.Concat(Hosts).Select(h => $"[{h.Address}]\n{h.Output}"));
        return all.Length <= tail ? all : all[^tail..];
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        var logs = Path.Combine(ReliabilityReport.Directory(), "hosts");
        System.IO.Directory.CreateDirectory(logs);
        var n = 0;
        foreach (var host in _killed.Concat(Hosts))
        {
            await host.DisposeAsync().ConfigureAwait(false);
            await File.WriteAllTextAsync(Path.Combine(logs, $"{Broker.VirtualHost}-{++n}.log"), host.Output).ConfigureAwait(false);
        }

        if (BrokerProxy is not null)
            await BrokerProxy.DisposeAsync().ConfigureAwait(false);
        if (DatabaseProxy is not null)
            await DatabaseProxy.DisposeAsync().ConfigureAwait(false);
        await Broker.DisposeAsync().ConfigureAwait(false);
        await Database.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>What one flow did under one fault.</summary>
public sealed class FlowFigures(string flow)
{
    /// <summary>Orders or parts requests.</summary>
    public string Flow { get; } = flow;

    /// <summary>Accepted by the system (HTTP 202; broker-confirmed publish).</summary>
    public int Sent { get; set; }

    /// <summary>Reached their consumer (saga started; request in its destination queue).</summary>
    public int Delivered { get; set; }

    /// <summary>Broker redeliveries of one message (same message id / request id, same destination): at-least-once copies an idempotent receiver absorbs.</summary>
    public int RedeliveredCopies { get; set; }

    /// <summary>An effect applied twice: two reservations, purchase orders or outcomes (distinct messages) for one order, a saga step twice, a request routed to two destinations.</summary>
    public int DuplicatedEffects { get; set; }

    /// <summary>Sent and never arrived (or arrived without its outcome / audit copy).</summary>
    public int Lost { get; set; }

    /// <summary>Orders whose saga ended Completed or Failed.</summary>
    public int SagasFinal { get; set; }

    /// <summary>
    /// Effects that happened out of their key's sequence: for orders, a saga step applied before a step that precedes it in the
    /// fulfillment protocol (per order id, the partition key); for parts requests, a request reaching its destination queue after a
    /// later request of the same device (per device, by the sequence number the device puts in each request). Null when not checked.
    /// </summary>
    public int? OrderViolations { get; set; }

    /// <summary>Supporting figures.</summary>
    public string Extra { get; set; } = "";
}

/// <summary>One fault scenario's accounting.</summary>
public sealed class FaultReport(string fault, int injections, TimeSpan traffic, TimeSpan settle)
{
    /// <summary>The fault injected.</summary>
    public string Fault { get; } = fault;

    /// <summary>How many times it was injected.</summary>
    public int Injections { get; } = injections;

    /// <summary>How long traffic ran.</summary>
    public TimeSpan Traffic { get; } = traffic;

    /// <summary>How long the system took to settle after the traffic stopped.</summary>
    public TimeSpan Settle { get; } = settle;

    /// <summary>HTTP orders through the outbox and the saga.</summary>
    public FlowFigures Orders { get; } = new("orders (HTTP → outbox → saga)");

    /// <summary>Raw parts requests through the route.</summary>
    public FlowFigures Parts { get; } = new("parts requests (AMQP → route)");

    /// <summary>Messages left in <c>_error</c> / <c>_skipped</c> queues.</summary>
    public Dictionary<string, long> ErrorQueues { get; set; } = [];

    /// <summary>One line per message that went wrong in a way no known issue explains: each fails the spec.</summary>
    public List<string> Details { get; } = [];

    /// <summary>One line per message that went wrong by a known, documented issue (see <see cref="KnownIssues"/>).</summary>
    public List<string> Known { get; } = [];

    /// <summary>The Markdown rows of this scenario (see <see cref="ReliabilityReport.Header"/>).</summary>
    public IEnumerable<string> Rows()
    {
        var fault = Injections > 1 ? $"{Fault} (×{Injections})" : Fault;
        var errors = ErrorQueues.Count == 0 ? "0" : string.Join(", ", ErrorQueues.Select(e => $"{e.Key}: {e.Value}"));
        yield return $"| {fault} | {Orders.Flow} | {Orders.Sent} | {Orders.Delivered} | {Orders.DuplicatedEffects} | {Orders.Lost} | {Orders.SagasFinal}/{Orders.Sent} | {Violations(Orders)} | {Orders.RedeliveredCopies} | {errors} |";
        // The parts route promises no order (competing consumers, redelivery after a cut): its reorderings are measured and shown,
        // not counted as violations of a promise.
        var reordered = Parts.OrderViolations is { } r ? $"none promised ({r} reordered)" : "none promised";
        yield return $"| {fault} | {Parts.Flow} | {Parts.Sent} | {Parts.Delivered} | {Parts.DuplicatedEffects} | {Parts.Lost} | n/a | {reordered} | {Parts.RedeliveredCopies} | |";

        static string Violations(FlowFigures flow) => flow.OrderViolations?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "n/a";
    }

    /// <summary>A readable summary for the test output.</summary>
    public override string ToString()
    {
        var lines = new List<string>
        {
            $"{Fault}: injected {Injections}×, traffic {Traffic.TotalSeconds:F1} s, settled in {Settle.TotalSeconds:F1} s",
            $"  orders: {Orders.Extra}",
        };
        if (Parts.Extra.Length > 0)
            lines.Add($"  parts: {Parts.Extra}");
        lines.AddRange(Details.Take(40).Select(d => "  UNEXPLAINED " + d));
        if (Details.Count > 40)
            lines.Add($"  ... and {Details.Count - 40} more");
        lines.AddRange(Known.Take(20).Select(d => "  known " + d));
        if (Known.Count > 20)
            lines.Add($"  ... and {Known.Count - 20} more known");
        return string.Join('\n', lines);
    }
}

/// <summary>
/// Issues the fault suite found (docs/reliability.md), now fixed; their signatures are kept to name a regression. The suite reports their
/// figures in the table; since K1 and K2 are fixed it fails on them too, unless <c>INTEGRATION_RELIABILITY_STRICT=0</c>.
/// </summary>
public static class KnownIssues
{
    /// <summary>
    /// The sample's simulated warehouse and supplier publish their reply with <c>context.Publish</c> and keep no inbox: a
    /// command redelivered after its reply was sent (ack lost to a crash or a cut connection) is executed again: a second
    /// reservation or purchase order. The saga refuses the second reply (NotAcceptedStateMachineException → order-fulfillment_error).
    /// </summary>
    public const string SimulatedServicesNotIdempotent = "K1 simulated services not idempotent";

    /// <summary>
    /// The PostgreSQL saga repository commits the new state and only then sends the saga's messages (in-memory outbox).
    /// When the send fails (broker cut) or the process dies in between, the event is redelivered, finds the saga already in
    /// the next state and is refused, so the command the first attempt should have sent is never sent: the saga is stuck.
    /// </summary>
    public const string SagaPublishAfterCommit = "K2 saga sends after commit";

    /// <summary>True when known issues must fail the suite too.</summary>
    public static bool Strict => Environment.GetEnvironmentVariable("INTEGRATION_RELIABILITY_STRICT") != "0";
}
