using System.Collections.Concurrent;
using Integration.Testing.Xunit;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace Integration.Testing.Xunit.Specs;

[CollectionDefinition(IntegrationCollection.Name)]
public sealed class IntegrationCollection : ICollectionFixture<IntegrationInfrastructureFixture>
{
    public const string Name = "Integration";
}

public sealed record Ping(Guid Id);

public sealed class Pings
{
    public ConcurrentQueue<Guid> Received { get; } = new();
}

[Collection(IntegrationCollection.Name), Trait("Category", "Integration")]
public sealed class Xunit_Specs(IntegrationInfrastructureFixture fixture)
{
    [Fact]
    public async Task When_a_host_runs_under_xunit_should_get_the_shared_infrastructure_and_consume_on_its_own_virtual_host()
    {
        var pings = new Pings();
        await using var host = await IntegrationServiceHost.StartAsync(h =>
        {
            h.Services.AddSingleton(pings);
            h.Services.AddMassTransit(x =>
            {
                x.AddHandler<Ping>(context =>
                {
                    pings.Received.Enqueue(context.Message.Id);
                    return Task.CompletedTask;
                }).Endpoint(e => e.Name = "pings");
                x.UsingRabbitMq((context, cfg) =>
                {
                    h.Broker.ConfigureHost(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            });
        }, o => o.Infrastructure = fixture.Infrastructure);
        var id = Guid.NewGuid();

        await host.Services.GetRequiredService<IBus>().Publish(new Ping(id));

        Assert.True(await Eventually.TrueAsync(() => Task.FromResult(pings.Received.Contains(id)), TimeSpan.FromSeconds(30)),
            "the ping never reached its handler");
        Assert.StartsWith("svc-", host.Broker.VirtualHost, StringComparison.Ordinal);
    }
}
