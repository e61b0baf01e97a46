using System.Diagnostics;
using Integration.Benchmarks.Harness;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Filtering;
using Integration.Patterns.Routing;
using Integration.Patterns.WireTap;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Benchmarks.Scenarios;

/// <summary>
/// Scenario 3: a 3-step route (wire tap, filter, content router) against (a) the plain MassTransit consumer of scenario 2
/// and (b) a hand-written MassTransit consumer doing the same two sends (copy + forward), so the ratio to (b) is the
/// framework's own cost and the ratio to (a) includes the extra broker work the route's sends cause.
/// Throughput counts input messages whose routed copy reached the destination.
/// </summary>
public sealed class RouteScenario : IScenario
{
    const string HandWrittenName = "hand-written consumer, same sends";

    public string Name => "route";
    public string Description => "3-step route (wire tap, filter, router) vs plain MassTransit consumer and vs a hand-written consumer doing the same sends";

    public async Task<IReadOnlyList<Result>> RunAsync(BenchContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var plain = await Baselines.MassTransitThroughput(context);
        // In turns: the ratio of the two is the framework's cost, so neither may get the machine's quieter minutes.
        var medians = await context.InTurnsAsync(count => Measure(context, count, route: false), count => Measure(context, count, route: true));
        var (handWritten, route) = (medians[0], medians[1]);
        return
        [
            new Result("3 route", HandWrittenName, "throughput", handWritten, "msg/s", Baselines.MassTransitName, plain),
            new Result("3 route", "wire tap + filter + router", "throughput", route, "msg/s", HandWrittenName, handWritten, "framework cost alone"),
            new Result("3 route", "wire tap + filter + router", "throughput", route, "msg/s", Baselines.MassTransitName, plain, "includes 2 extra broker sends per message"),
        ];
    }

    sealed class Counter(Countdown countdown) : IConsumer<BenchMessage>
    {
        public Task Consume(ConsumeContext<BenchMessage> context)
        {
            countdown.Signal();
            return Task.CompletedTask;
        }
    }

    sealed class HandWrittenConsumer : IConsumer<BenchMessage>
    {
        static readonly Uri Audit = new("queue:bench-audit");
        static readonly Uri Out = new("queue:bench-out");

        public async Task Consume(ConsumeContext<BenchMessage> context)
        {
            var tap = context.Send(Audit, context.Message);
            if (context.Message.Index >= 0)
                await context.Send(Out, context.Message);
            await tap;
        }
    }

    static async Task<double> Measure(BenchContext context, int count, bool route)
    {
        var settings = context.Settings;
        await using var broker = await context.Infrastructure.CreateVirtualHostAsync(route ? "bench-route" : "bench-hand");
        var countdown = new Countdown(count);
        await using var provider = new ServiceCollection()
            .AddSingleton(countdown)
            .AddMassTransit(x =>
            {
                if (route)
                {
                    x.AddIntegrationRoutes(routes => routes.From<BenchMessage>("bench-in", r => r
                        .WireTap("bench-audit")
                        .Filter(m => m.Index >= 0, Rejection.CountAndLog)
                        .Route(c => c.When(m => m.Index % 2 == 0, "bench-out").Otherwise("bench-out"))));
                }
                else
                {
                    x.AddConsumer<HandWrittenConsumer>().Endpoint(e => e.Name = "bench-in");
                }

                x.AddConsumer<Counter>().Endpoint(e => e.Name = "bench-out");
                x.UsingRabbitMq((registration, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.PrefetchCount = settings.Prefetch;
                    cfg.ConfigureIntegrationRoutes(registration);
                    cfg.ReceiveEndpoint("bench-audit", e => e.Handler<BenchMessage>(_ => Task.CompletedTask));
                    cfg.ConfigureEndpoints(registration);
                });
            })
            .BuildServiceProvider();
        var bus = provider.GetRequiredService<IBusControl>();
        await bus.StartAsync();
        try
        {
            var endpoint = await bus.GetSendEndpoint(new Uri("queue:bench-in"));
            var payload = new string('x', settings.Size);
            var stopwatch = Stopwatch.StartNew();
            await Pump.RunAsync(count, settings.Concurrency, i => endpoint.Send(new BenchMessage(i, payload)));
            await countdown.WaitAsync(TimeSpan.FromMinutes(3), route ? "route" : HandWrittenName);
            return count / stopwatch.Elapsed.TotalSeconds;
        }
        finally
        {
            await bus.StopAsync();
        }
    }
}
