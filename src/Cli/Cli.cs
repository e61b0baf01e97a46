using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace Integration.Cli;

/// <summary>The <c>integration</c> tool: its commands over a host's control API, and how they end (see <see cref="ExitCodes"/>).</summary>
static class Cli
{
    /// <summary>Environment variable with the host's base URL.</summary>
    public const string UrlVariable = "INTEGRATION_URL";

    /// <summary>Environment variable with the control key.</summary>
    public const string KeyVariable = "INTEGRATION_API_KEY";

    /// <summary>The base URL when neither <c>--url</c> nor <see cref="UrlVariable"/> gives one.</summary>
    public const string DefaultUrl = "http://localhost:5080/";

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Runs the command line <paramref name="args"/>, writing to <paramref name="console"/>. <paramref name="handler"/>
    /// replaces the network (tests); <paramref name="environment"/> replaces the process environment.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, IAnsiConsole console, TextWriter output, HttpMessageHandler? handler = null,
        Func<string, string?>? environment = null, CancellationToken cancellationToken = default)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var url = new Option<string?>("--url", "-u") { Description = $"The host's base URL (else ${UrlVariable}, else {DefaultUrl})", Recursive = true };
        var key = new Option<string?>("--key", "-k") { Description = $"Control API key, sent as X-Api-Key (else ${KeyVariable})", Recursive = true };
        var json = new Option<bool>("--json") { Description = "Print the host's JSON instead of tables", Recursive = true };
        var timeout = new Option<int>("--timeout") { Description = "Seconds to wait for each answer", DefaultValueFactory = _ => 100, Recursive = true };

        var root = new RootCommand("integration: operate an IntegrationKit host over its control API. Exit codes: 0 ok, 1 failure found or check failed, "
            + "2 usage, 3 host unreachable, 4 unauthorized or forbidden, 5 not found, 6 host error.");
        root.Options.Add(url);
        root.Options.Add(key);
        root.Options.Add(json);
        root.Options.Add(timeout);

        Context Context(ParseResult parse)
        {
            var baseUrl = parse.GetValue(url) ?? environment(UrlVariable) ?? DefaultUrl;
            if (!Uri.TryCreate(baseUrl.EndsWith('/') ? baseUrl : baseUrl + "/", UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
                throw new CliException(ExitCodes.Usage, $"--url: '{baseUrl}' is not an http(s) URL");
            var http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
            http.BaseAddress = address;
            http.Timeout = TimeSpan.FromSeconds(Math.Max(1, parse.GetValue(timeout)));
            return new Context(new ControlClient(http, parse.GetValue(key) ?? environment(KeyVariable)), http, console, parse.GetValue(json));
        }

        void Add(Command parent, Command command, Func<Context, ParseResult, CancellationToken, Task<int>> run)
        {
            command.SetAction(async (parse, ct) =>
            {
                try
                {
                    using var context = Context(parse);
                    return await run(context, parse, ct).ConfigureAwait(false);
                }
                catch (CliException exception)
                {
                    console.MarkupLineInterpolated($"[red]{exception.Message}[/]");
                    return exception.ExitCode;
                }
            });
            parent.Subcommands.Add(command);
        }

        Add(root, new Command("describe", "The host's routes (with their steps), receive endpoints, sagas and schedules"), Describe);
        Add(root, new Command("check-env", "Check the host's environment: broker, database, migrations, bus, outbox, probes and the key"), CheckEnvironment);

        var failures = new Command("failures", "Failed messages of the host's error queues, grouped by exception, message type and route step");
        root.Subcommands.Add(failures);
        var listQueue = new Option<string?>("--queue") { Description = "Only this error queue (<queue>_error)" };
        var list = new Command("list", "List failure groups (exit code 1 when there is any)") { listQueue };
        Add(failures, list, (c, p, ct) => ListFailures(c, p.GetValue(listQueue), ct));

        var group = new Argument<string?>("group") { Description = "A group id from 'failures list'; leave out to retry by filter", Arity = ArgumentArity.ZeroOrOne };
        var queue = new Option<string?>("--queue") { Description = "Only this error queue" };
        var type = new Option<string?>("--type") { Description = "Part of the message type" };
        var from = new Option<DateTimeOffset?>("--from") { Description = "Failed at or after (ISO 8601)" };
        var to = new Option<DateTimeOffset?>("--to") { Description = "Failed at or before (ISO 8601)" };
        var correlation = new Option<string?>("--correlation-id") { Description = "Correlation id" };
        var reason = new Option<string?>("--reason") { Description = "Text in the failure reason" };
        var batch = new Option<int>("--batch") { Description = "Messages moved per call (the progress bar advances per batch)", DefaultValueFactory = _ => 100 };
        var retry = new Command("retry", "Move failed messages back to the queue they failed on: a group, or every message a filter matches")
            { group, queue, type, from, to, correlation, reason, batch };
        Add(failures, retry, (c, p, ct) => RetryFailures(c, p.GetValue(group), new RetryFilter(p.GetValue(queue), p.GetValue(type), p.GetValue(from), p.GetValue(to),
            p.GetValue(correlation), p.GetValue(reason)), p.GetValue(batch), ct));

        var saga = new Command("saga", "Saga instances");
        root.Subcommands.Add(saga);
        var sagaName = new Argument<string>("saga") { Description = "The saga's name (as 'describe' lists it)" };
        var sagaId = new Argument<string>("correlationId") { Description = "The instance's correlation id" };
        var show = new Command("show", "An instance's current state and its timeline") { sagaName, sagaId };
        Add(saga, show, (c, p, ct) => ShowSaga(c, p.GetValue(sagaName)!, p.GetValue(sagaId)!, ct));

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
                console.MarkupLineInterpolated($"[red]{error.Message}[/]");
            console.MarkupLine("Try [bold]integration --help[/].");
            return ExitCodes.Usage;
        }

        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = output }, cancellationToken).ConfigureAwait(false);
    }

    sealed record Context(ControlClient Client, HttpClient Http, IAnsiConsole Console, bool Json) : IDisposable
    {
        public void Dispose() => Http.Dispose();

        public void WriteJson(object value) => Console.WriteLine(JsonSerializer.Serialize(value, Indented), Style.Plain);
    }

    sealed record RetryFilter(string? Queue, string? MessageType, DateTimeOffset? From, DateTimeOffset? To, string? CorrelationId, string? Reason)
    {
        public bool IsEmpty => Queue is null && MessageType is null && From is null && To is null && CorrelationId is null && Reason is null;
    }

    static async Task<int> Describe(Context c, ParseResult parse, CancellationToken ct)
    {
        var routes = ControlClient.Data((await c.Client.GetAsync("api/control/routes", ct).ConfigureAwait(false))!.Value);
        var endpoints = ControlClient.Data((await c.Client.GetAsync("api/control/endpoints", ct).ConfigureAwait(false))!.Value);
        var overview = ControlClient.Data((await c.Client.GetAsync("api/control/overview?take=1", ct).ConfigureAwait(false))!.Value);
        var schedules = await c.Client.GetAsync("api/control/schedules", ct, allowNotFound: true).ConfigureAwait(false) is { } s ? ControlClient.Data(s) : (JsonElement?)null;
        var sagas = overview.TryGetProperty("sagas", out var sg) ? sg : default;
        if (c.Json)
        {
            c.WriteJson(new { routes = routes.TryGetProperty("routes", out var r) ? r : default, endpoints, sagas, schedules });
            return ExitCodes.Ok;
        }

        var routeTable = new Table().Title("Routes").AddColumns("Route", "Message type", "Steps");
        if (routes.TryGetProperty("routes", out var list) && list.ValueKind == JsonValueKind.Array)
        {
            foreach (var route in list.EnumerateArray())
            {
                var steps = route.TryGetProperty("steps", out var st) && st.ValueKind == JsonValueKind.Array
                    ? string.Join(" → ", st.EnumerateArray().Select(Text))
                    : "";
                routeTable.AddRow(Markup.Escape(Str(route, "route")), Markup.Escape(Str(route, "messageType")), Markup.Escape(steps));
            }
        }

        c.Console.Write(routeTable);
        var endpointTable = new Table().Title("Receive endpoints").AddColumns("Endpoint", "State", "Address");
        foreach (var endpoint in Items(endpoints))
            endpointTable.AddRow(Markup.Escape(Str(endpoint, "name")), Markup.Escape(Str(endpoint, "state")), Markup.Escape(Str(endpoint, "address")));
        c.Console.Write(endpointTable);
        var sagaTable = new Table().Title("Sagas").AddColumns("Saga", "State", "Instances");
        foreach (var instance in Items(sagas))
            sagaTable.AddRow(Markup.Escape(Str(instance, "saga")), Markup.Escape(Str(instance, "state")), Str(instance, "count"));
        c.Console.Write(sagaTable);
        if (schedules is { } scheduled)
        {
            var scheduleTable = new Table().Title("Schedules").AddColumns("Schedule", "Details");
            foreach (var item in Items(scheduled))
                scheduleTable.AddRow(Markup.Escape(Str(item, "name")), Markup.Escape(item.GetRawText()));
            c.Console.Write(scheduleTable);
        }
        else
        {
            c.Console.MarkupLine("[grey]Schedules: this host's control API does not list them[/]");
        }

        return ExitCodes.Ok;
    }

    static async Task<int> CheckEnvironment(Context c, ParseResult parse, CancellationToken ct)
    {
        var checks = new List<(string Name, bool Ok, string Detail)>();
        await c.Client.GetAsync("health/live", ct).ConfigureAwait(false);
        checks.Add(("host", true, $"answers at {c.Http.BaseAddress}"));
        var ready = (await c.Client.GetAsync("health/ready", ct, allowUnavailable: true).ConfigureAwait(false))!.Value;
        if (ready.TryGetProperty("checks", out var entries) && entries.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in entries.EnumerateObject())
            {
                var status = Str(entry.Value, "status");
                var detail = string.Join(": ", new[] { Str(entry.Value, "description"), Str(entry.Value, "error") }.Where(x => x.Length > 0));
                checks.Add((entry.Name switch { "rabbitmq" => "broker (rabbitmq)", "postgres" => "database (postgres)", _ => entry.Name }, status == "Healthy",
                    $"{status}{(detail.Length > 0 ? " — " + detail : "")}"));
            }
        }

        try
        {
            var environment = ControlClient.Data((await c.Client.GetAsync("api/control/environment", ct).ConfigureAwait(false))!.Value);
            checks.Add(("key", true, "accepted by the control API"));
            var migrations = environment.GetProperty("migrations");
            var pending = migrations.GetProperty("pending").EnumerateArray().Select(Text).ToList();
            checks.Add(("migrations", pending.Count == 0, pending.Count == 0
                ? $"{migrations.GetProperty("applied").GetArrayLength()} applied, none pending"
                : $"pending: {string.Join(", ", pending)}"));
            var keys = Items(environment.GetProperty("keys")).Select(k => $"{Str(k, "name")} ({Str(k, "role")})").ToList();
            checks.Add(("keys", keys.Count > 0, keys.Count == 0 ? "none configured: every control call is refused" : string.Join(", ", keys)));
        }
        catch (CliException exception) when (exception.ExitCode is ExitCodes.Unauthorized or ExitCodes.NotFound)
        {
            checks.Add(("key", false, exception.Message));
        }

        if (c.Json)
            c.WriteJson(checks.Select(x => new { check = x.Name, ok = x.Ok, detail = x.Detail }));
        else
        {
            var table = new Table().AddColumns("Check", "", "Detail");
            foreach (var (name, ok, detail) in checks)
                table.AddRow(new Text(name), new Markup(ok ? "[green]ok[/]" : "[red]FAIL[/]"), new Text(detail));
            c.Console.Write(table);
        }

        return checks.All(x => x.Ok) ? ExitCodes.Ok : ExitCodes.Failure;
    }

    static async Task<int> ListFailures(Context c, string? queue, CancellationToken ct)
    {
        var path = queue is null ? "api/control/failures" : $"api/control/failures?queue={Uri.EscapeDataString(queue)}";
        var groups = (await c.Client.GetAsync(path, ct).ConfigureAwait(false))!.Value;
        var items = Items(groups).ToList();
        if (c.Json)
            c.WriteJson(groups);
        else if (items.Count == 0)
            c.Console.MarkupLine("[green]No failed messages[/]");
        else
        {
            var table = new Table().AddColumns("Group", "Queue", "Exception", "Message type", "Step", "Count", "First seen", "Last seen");
            foreach (var g in items)
                table.AddRow(Markup.Escape(Str(g, "id")), Markup.Escape(Str(g, "queue")), Markup.Escape(Str(g, "exceptionType")), Markup.Escape(Str(g, "messageType")),
                    Markup.Escape(Str(g, "routeStep")), Str(g, "count"), Markup.Escape(Str(g, "firstSeen")), Markup.Escape(Str(g, "lastSeen")));
            c.Console.Write(table);
            c.Console.MarkupLineInterpolated($"{items.Sum(g => g.GetProperty("count").GetInt32())} failed message(s) in {items.Count} group(s)");
        }

        return items.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
    }

    static async Task<int> RetryFailures(Context c, string? group, RetryFilter filter, int batch, CancellationToken ct)
    {
        if (group is null && filter.IsEmpty)
            throw new CliException(ExitCodes.Usage, "failures retry needs a group id or a filter (--queue, --type, --from, --to, --correlation-id, --reason)");
        if (batch < 1)
            throw new CliException(ExitCodes.Usage, $"--batch must be at least 1, not {batch}");
        int? total = null;
        if (group is not null)
        {
            var groups = (await c.Client.GetAsync("api/control/failures", ct).ConfigureAwait(false))!.Value;
            var found = Items(groups).FirstOrDefault(g => Str(g, "id") == group);
            if (found.ValueKind != JsonValueKind.Object)
                throw new CliException(ExitCodes.NotFound, $"No failure group '{group}' (see 'integration failures list')");
            total = found.GetProperty("count").GetInt32();
        }

        async Task<int> Batch()
        {
            var answer = group is not null
                ? await c.Client.PostAsync($"api/control/failures/{Uri.EscapeDataString(group)}/retry?max={batch}", null, ct).ConfigureAwait(false)
                : await c.Client.PostAsync("api/control/failures/retry", new
                {
                    queue = filter.Queue, messageType = filter.MessageType, from = filter.From, to = filter.To, correlationId = filter.CorrelationId,
                    reason = filter.Reason, max = batch,
                }, ct).ConfigureAwait(false);
            return answer.GetProperty("moved").GetInt32();
        }

        var moved = 0;
        var title = group is null ? "Retrying (filter)" : $"Retrying {group}";
        if (!c.Console.Profile.Capabilities.Interactive)
        {
            // Redirected output (a script, CI): one line per batch instead of a live bar, whose fallback renderer prints
            // only when enough time passed between refreshes.
            while (true)
            {
                var step = await Batch().ConfigureAwait(false);
                moved += step;
                if (!c.Json)
                    c.Console.WriteLine(total is { } of ? $"{title}: {moved}/{of}" : $"{title}: {moved}");
                if (step < batch || (total is { } t && moved >= t))
                    break;
            }
        }
        else
        {
            await c.Console.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(async progress =>
                {
                    var task = progress.AddTask(title, maxValue: total ?? 1);
                    task.IsIndeterminate = total is null;
                    while (true)
                    {
                        var step = await Batch().ConfigureAwait(false);
                        moved += step;
                        task.Increment(step);
                        if (step < batch || (total is { } t && moved >= t))
                            break;
                    }

                    task.Value = task.MaxValue;
                    task.StopTask();
                }).ConfigureAwait(false);
        }

        if (c.Json)
            c.WriteJson(new { moved });
        else
            c.Console.MarkupLineInterpolated($"Moved [bold]{moved}[/] message(s) back to their source queue");
        return moved == 0 ? ExitCodes.NotFound : ExitCodes.Ok;
    }

    static async Task<int> ShowSaga(Context c, string saga, string correlationId, CancellationToken ct)
    {
        var answer = (await c.Client.GetAsync($"api/control/sagas/{Uri.EscapeDataString(saga)}/{Uri.EscapeDataString(correlationId)}", ct).ConfigureAwait(false))!.Value;
        var instance = ControlClient.Data(answer);
        if (c.Json)
        {
            c.WriteJson(instance);
            return ExitCodes.Ok;
        }

        c.Console.MarkupLineInterpolated($"[bold]{saga}[/] {correlationId}: state [bold]{Str(instance, "state")}[/]");
        var table = new Table().Title("Timeline").AddColumns("At", "Event", "From", "To");
        if (instance.TryGetProperty("timeline", out var timeline))
        {
            foreach (var entry in Items(timeline))
                table.AddRow(Markup.Escape(Str(entry, "at")), Markup.Escape(Str(entry, "event")), Markup.Escape(Str(entry, "from")), Markup.Escape(Str(entry, "to")));
        }

        c.Console.Write(table);
        return ExitCodes.Ok;
    }

    static IEnumerable<JsonElement> Items(JsonElement array) => array.ValueKind == JsonValueKind.Array ? array.EnumerateArray() : [];

    static string Str(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) ? Text(value) : "";

    static string Text(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() ?? "",
        JsonValueKind.Null or JsonValueKind.Undefined => "",
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.Object when value.TryGetProperty("name", out var name) => Text(name),
        _ => value.GetRawText(),
    };
}
