using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using Integration.Host.Contracts;
using Integration.Testing;
using Integration.Testing.Faults;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NUnit.Framework;

namespace Integration.Host.Tests.Orders;

/// <summary>The outbox under a real crash: the host process is SIGKILLed after committing orders it could not yet deliver.</summary>
[TestFixture]
[Category("Integration")]
public sealed class OrdersCrash_Specs
{
    [Test]
    public async Task When_the_host_is_killed_after_commit_and_before_delivery_should_deliver_every_order_after_restart()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crash");
        await using var database = await infrastructure.CreateDatabaseAsync("crash");

        // The downstream consumer exists first (a publish with no bound queue is dropped by the broker).
        var received = new ConcurrentDictionary<Guid, int>();
        await using var consumer = new ServiceCollection()
            .AddMassTransitTestHarness(x =>
            {
                x.AddHandler<OrderSubmitted>(async (ConsumeContext<OrderSubmitted> c) =>
                {
                    received.AddOrUpdate(c.Message.OrderId, 1, (_, n) => n + 1);
                    await Task.CompletedTask;
                });
                x.UsingRabbitMq((context, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            })
            .BuildServiceProvider(true);
        await consumer.GetRequiredService<ITestHarness>().Start();

        var settings = new Dictionary<string, string?>(broker.HostSettings())
        {
            ["Integration:Postgres:ConnectionString"] = database.ConnectionString,
            ["Integration:Probes:Enabled"] = "false",
            ["Integration:Outbox:SendTimeout"] = "00:00:03",
            ["Integration:Outbox:LockDuration"] = "00:00:10",
        };

        var orderIds = new List<Guid>();
        await using (var proxy = TcpProxy.Start(broker.Host, broker.Port))
        {
            var throughProxy = new Dictionary<string, string?>(settings)
            {
                ["Integration:RabbitMq:Host"] = "127.0.0.1",
                ["Integration:RabbitMq:Port"] = proxy.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            await using var doomed = await HostProcess.StartAsync("Integration.Host.dll", throughProxy);
            proxy.Disconnect();

            for (var i = 0; i < 20; i++)
            {
                var orderId = Guid.NewGuid();
                using var response = await doomed.Client.PostAsJsonAsync(new Uri("/api/orders", UriKind.Relative),
                    new { orderId, deviceId = "truck-1", region = "north", lines = new[] { new { sku = "S-1", quantity = 1 } } });
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
                orderIds.Add(orderId);
            }

            Assert.That(await Undelivered(database), Is.EqualTo(20), "precondition: committed and not delivered");
            doomed.Kill();
        }

        Assert.That(received, Is.Empty, "precondition: nothing was delivered before the crash");

        await using var restarted = await HostProcess.StartAsync("Integration.Host.dll", settings);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(orderIds.All(received.ContainsKey)), TimeSpan.FromSeconds(60)), Is.True,
            () => $"delivered {orderIds.Count(received.ContainsKey)} of {orderIds.Count} after the restart");
        Assert.That(received.Values.Where(n => n > 1), Is.Empty, "an order was delivered twice");
        Assert.That(await Eventually.TrueAsync(async () => await Undelivered(database) == 0, TimeSpan.FromSeconds(20)), Is.True);
    }

    static async Task<long> Undelivered(TestDatabase database)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM outbox_messages WHERE delivered_at IS NULL", connection);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
