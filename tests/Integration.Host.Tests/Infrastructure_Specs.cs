using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NUnit.Framework;

namespace Integration.Host.Tests;

public sealed record InfrastructurePing(Guid Id, string Text);

/// <summary>The test infrastructure itself: a real broker and a real database, isolated per test.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Infrastructure_Specs
{
    [Test]
    public async Task When_a_message_is_sent_should_round_trip_through_the_real_broker()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("infra");
        await using var provider = new ServiceCollection()
            .AddMassTransitTestHarness(x =>
            {
                x.AddHandler<InfrastructurePing>((ConsumeContext<InfrastructurePing> _) => Task.CompletedTask);
                x.UsingRabbitMq((context, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.ConfigureEndpoints(context);
                });
            })
            .BuildServiceProvider(true);
        var harness = provider.GetRequiredService<ITestHarness>();
        await harness.Start();

        var id = Guid.NewGuid();
        await harness.Bus.Publish(new InfrastructurePing(id, "hello"));

        Assert.That(await harness.Consumed.Any<InfrastructurePing>(x => x.Context.Message.Id == id), Is.True);
    }

    [Test]
    public async Task When_a_row_is_written_should_read_back_from_the_test_database()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var database = await infrastructure.CreateDatabaseAsync("infra");
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using (var create = new NpgsqlCommand("CREATE TABLE ping (id uuid PRIMARY KEY, text text NOT NULL)", connection))
            await create.ExecuteNonQueryAsync();
        var id = Guid.NewGuid();
        await using (var insert = new NpgsqlCommand("INSERT INTO ping VALUES (@id, 'hello')", connection))
        {
            insert.Parameters.AddWithValue("id", id);
            await insert.ExecuteNonQueryAsync();
        }

        await using var select = new NpgsqlCommand("SELECT text FROM ping WHERE id = @id", connection);
        select.Parameters.AddWithValue("id", id);
        Assert.That(await select.ExecuteScalarAsync(), Is.EqualTo("hello"));
    }
}
