using System.Diagnostics;
using Integration.Outbox.Inbox;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Outbox.Tests;

/// <summary>
/// The consumer side of the inbox as an OS process of its own (this test assembly run with <c>consumer</c>), so a spec
/// can kill it for real between its database commit and the broker ack — no exception, no finally blocks, no nack.
/// </summary>
public static class ConsumerProcess
{
    /// <summary>Printed once the bus is consuming.</summary>
    public const string Ready = "consumer-ready";

    /// <summary>Printed after the inbox transaction committed, right before the process kills itself.</summary>
    public const string Committed = "committed-killing-now";

    /// <summary>Entry point of the child: reads the broker and database from the environment and consumes <c>charges</c> with the inbox.</summary>
    public static async Task<int> RunAsync()
    {
        var env = Environment.GetEnvironmentVariables();
        string Get(string name) => env[name] as string ?? throw new InvalidOperationException($"{name} is not set");
        var killAfterCommit = Environment.GetEnvironmentVariable("KILL_AFTER_COMMIT") == "1";

        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Integration", LogLevel.Information);
        builder.Services.AddSingleton(new Received());
        builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(Get("CONSUMER_POSTGRES")));
        builder.Services.AddIntegrationOutbox<ShopDbContext>(o =>
        {
            // A relay killed with its claim holds it until the lease ends: short, so the next process takes over quickly.
            o.SendTimeout = TimeSpan.FromSeconds(2);
            o.LockDuration = TimeSpan.FromSeconds(4);
        });
        builder.Services.AddMassTransit(x =>
        {
            x.AddConsumer<ChargeCardConsumer>().ExcludeFromConfigureEndpoints();
            x.UsingRabbitMq((context, cfg) =>
            {
                cfg.Host(Get("CONSUMER_RABBITMQ_HOST"), ushort.Parse(Get("CONSUMER_RABBITMQ_PORT"), System.Globalization.CultureInfo.InvariantCulture),
                    Get("CONSUMER_RABBITMQ_VHOST"), h =>
                    {
                        h.Username(Get("CONSUMER_RABBITMQ_USER"));
                        h.Password(Get("CONSUMER_RABBITMQ_PASSWORD"));
                    });
                cfg.ReceiveEndpoint("charges", e =>
                {
                    e.PrefetchCount = 1;
                    if (killAfterCommit)
                        e.UseFilter(new KillAfterCommit());   // outside the inbox: runs after its commit, before MassTransit acks
                    e.UseIntegrationInbox(context);
                    e.ConfigureConsumer<ChargeCardConsumer>(context);
                });
            });
        });
        builder.Services.Configure<MassTransitHostOptions>(o => o.WaitUntilStarted = true);
        using var host = builder.Build();
        await host.StartAsync();
        Console.WriteLine(Ready);
        await host.WaitForShutdownAsync();
        return 0;
    }

    sealed class KillAfterCommit : IFilter<ConsumeContext>
    {
        public async Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
        {
            await next.Send(context);
            Console.WriteLine(Committed);
            Console.Out.Flush();
            Process.GetCurrentProcess().Kill();   // SIGKILL, as a crash or the OOM killer would
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("kill-after-commit");
    }

    /// <summary>Starts the child against <paramref name="broker"/> and <paramref name="database"/>; the returned handle collects its output.</summary>
    public static async Task<Child> StartAsync(TestBroker broker, TestDatabase database, bool killAfterCommit)
    {
        var info = new ProcessStartInfo("dotnet", $"\"{typeof(ConsumerProcess).Assembly.Location}\" consumer")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["CONSUMER_POSTGRES"] = database.ConnectionString;
        info.Environment["CONSUMER_RABBITMQ_HOST"] = broker.Host;
        info.Environment["CONSUMER_RABBITMQ_PORT"] = broker.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        info.Environment["CONSUMER_RABBITMQ_VHOST"] = broker.VirtualHost;
        info.Environment["CONSUMER_RABBITMQ_USER"] = broker.Username;
        info.Environment["CONSUMER_RABBITMQ_PASSWORD"] = broker.Password;
        info.Environment["KILL_AFTER_COMMIT"] = killAfterCommit ? "1" : "0";
        var child = new Child(Process.Start(info) ?? throw new InvalidOperationException("could not start the consumer process"));
        if (!await Eventually.TrueAsync(() => Task.FromResult(child.Printed(Ready) || child.Process.HasExited), TimeSpan.FromSeconds(60)) || child.Process.HasExited)
            throw new InvalidOperationException($"the consumer process did not start:\n{child.Output}");
        return child;
    }

    /// <summary>A running child and everything it printed.</summary>
    public sealed class Child : IDisposable
    {
        readonly System.Collections.Concurrent.ConcurrentQueue<string> _lines = new();

        internal Child(Process process)
        {
            Process = process;
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Output => string.Join('\n', _lines);

        public bool Printed(string text) => _lines.Any(l => l.Contains(text, StringComparison.Ordinal));

        public void Dispose()
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                Process.WaitForExit(10_000);
            }

            Process.Dispose();
        }
    }
}
