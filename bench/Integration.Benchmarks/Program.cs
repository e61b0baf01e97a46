using System.Globalization;
using System.Reflection;
using Integration.Benchmarks.Harness;
using Integration.Benchmarks.Scenarios;
using Integration.Testing;

BenchSettings settings;
try
{
    settings = BenchSettings.Parse(args);
}
catch (ArgumentException exception)
{
    Console.Error.WriteLine(exception.Message == "usage" ? "" : exception.Message);
    Console.Error.WriteLine("usage: Integration.Benchmarks [scenario...] [--count N] [--size BYTES] [--prefetch N] [--concurrency N] [--requests N] [--profile] [--chart FILE.svg]");
    Console.Error.WriteLine("scenarios: " + string.Join(", ", ScenarioCatalog.All.Select(s => s.Name)));
    return 2;
}

var selected = settings.Scenarios.Count == 0
    ? ScenarioCatalog.All
    : settings.Scenarios.Select(name => ScenarioCatalog.All.FirstOrDefault(s => s.Name == name)
        ?? throw new ArgumentException($"unknown scenario '{name}'; known: {string.Join(", ", ScenarioCatalog.All.Select(s => s.Name))}")).ToList();

var infrastructure = await IntegrationInfrastructure.GetAsync();
var context = new BenchContext(settings, infrastructure);
var c = CultureInfo.InvariantCulture;
Console.WriteLine("# Integration benchmarks");
Console.WriteLine(string.Create(c, $"- date: {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, nproc: {Environment.ProcessorCount}, .NET {Environment.Version}"));
Console.WriteLine(string.Create(c, $"- MassTransit {Version(typeof(MassTransit.IBus))}, RabbitMQ.Client {Version(typeof(RabbitMQ.Client.IChannel))}, Npgsql {Version(typeof(Npgsql.NpgsqlConnection))}"));
Console.WriteLine(string.Create(c, $"- messages per case: {settings.Count} (median of {context.Repeat} runs after a warm-up of {Math.Max(1, settings.Count / 10)}), body: {settings.Size} bytes, prefetch: {settings.Prefetch}, in-flight sends: {settings.Concurrency}, requests: {settings.RequestCount}"));
Console.WriteLine($"- peer: {Integration.Benchmarks.Peers.WolverinePeer.Settings(settings)}");
Console.WriteLine(string.Create(c, $"- scenarios: {string.Join(", ", selected.Select(s => s.Name))}"));
Console.WriteLine();

var results = new List<Result>();
var failed = 0;
foreach (var scenario in selected)
{
    Console.Error.WriteLine($"[bench] {scenario.Name}: {scenario.Description}");
    var started = DateTime.UtcNow;
    try
    {
        results.AddRange(await scenario.RunAsync(context));
    }
    catch (Exception exception)
    {
        failed++;
        Console.Error.WriteLine($"[bench] {scenario.Name} FAILED: {exception}");
        results.Add(new Result(scenario.Name, "FAILED", exception.GetType().Name, 0, "", Note: exception.Message.ReplaceLineEndings(" ")));
    }

    Console.Error.WriteLine(string.Create(c, $"[bench] {scenario.Name} took {(DateTime.UtcNow - started).TotalSeconds:0.0} s"));
}

Console.WriteLine(Report.Markdown(results));
Console.WriteLine("Ratios: rates are value / baseline, latencies are baseline / value; 1.00 means as fast as the baseline.");
if (results.Any(Chart.IsComparison))
{
    var chartPath = Path.GetFullPath(settings.Chart);
    Directory.CreateDirectory(Path.GetDirectoryName(chartPath)!);
    await File.WriteAllTextAsync(chartPath, Chart.Svg(results, string.Create(c, $"Ours beside {Integration.Benchmarks.Peers.WolverinePeer.Name}, {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm} UTC, nproc {Environment.ProcessorCount}")));
    Console.WriteLine($"Chart: {chartPath}");
}
return failed == 0 ? 0 : 1;

static string Version(Type type) =>
    (type.Assembly.GetCustomAttributes(typeof(AssemblyInformationalVersionAttribute), false).FirstOrDefault() as AssemblyInformationalVersionAttribute)
        ?.InformationalVersion.Split('+')[0] ?? type.Assembly.GetName().Version?.ToString() ?? "?";
