using Integration.Outbox.Model;
using Integration.Host.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Testing.Specs;

[TestFixture, Category("Integration")]
public sealed class OutboxHarness_Specs
{
    [Test]
    public async Task When_orders_were_committed_should_return_once_the_relay_delivered_them()
    {
        await using var host = await SampleHost.StartAsync();
        for (var i = 0; i < 5; i++)
            await host.SubmitOrder(quantity: 1);
        await using var scope = host.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<HostDbContext>();
        var committed = await db.Set<OutboxMessage>().MaxAsync(m => m.Sequence);

        await host.Outbox.WaitUntilDeliveredAsync();

        // The sagas go on committing outbox messages of their own; everything up to the call is delivered.
        Assert.Multiple(async () =>
        {
            Assert.That(await db.Set<OutboxMessage>().CountAsync(m => m.Sequence <= committed), Is.GreaterThanOrEqualTo(5));
            Assert.That(await db.Set<OutboxMessage>().CountAsync(m => m.Sequence <= committed && m.DeliveredAt == null), Is.Zero);
        });
    }
}
