using System.Text.RegularExpressions;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Postgres;
using Integration.Patterns.Postgres.Aggregation;
using Integration.Patterns.Postgres.ClaimCheck;
using Integration.Patterns.Postgres.Resequencing;
using Integration.Patterns.Routing;
using Integration.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>The tables of the stateful patterns: one mapping call, snake_case names, the schema option honoured by their SQL.</summary>
[TestFixture]
public sealed class PatternStore_Specs
{
    static readonly Regex SnakeCase = new("^[a-z][a-z0-9_]*$", RegexOptions.CultureInvariant);

    [Test]
    public void When_the_tables_are_mapped_should_name_every_table_column_key_and_index_in_snake_case()
    {
        using var context = new SchemaPatternsDbContext(new DbContextOptionsBuilder<SchemaPatternsDbContext>().UseNpgsql("Host=unused").Options);

        var entities = context.Model.GetEntityTypes().ToList();
        var names = entities.SelectMany(e =>
        {
            var table = StoreObjectIdentifier.Table(e.GetTableName()!, e.GetSchema());
            return new[] { e.GetTableName()! }
                .Concat(e.GetProperties().Select(p => p.GetColumnName(table)!))
                .Concat(e.GetKeys().Select(k => k.GetName()!))
                .Concat(e.GetForeignKeys().Select(f => f.GetConstraintName()!))
                .Concat(e.GetIndexes().Select(i => i.GetDatabaseName()!));
        }).ToList();

        Assert.That(entities.Select(e => e.GetTableName()), Is.EquivalentTo(new[] { "integration_aggregation_groups", "integration_aggregation_messages", "integration_claims" }));
        Assert.That(entities.Select(e => e.GetSchema()).Distinct(), Is.EqualTo(new[] { SchemaPatternsDbContext.Schema }));
        Assert.That(names.Where(n => !SnakeCase.IsMatch(n)), Is.Empty, "names that are not snake_case");
    }

    [Test]
    [Category("Integration")]
    public async Task When_a_schema_is_given_should_keep_the_state_of_every_stateful_pattern_in_it()
    {
        await using var database = await PatternDatabase.CreateAsync<SchemaPatternsDbContext>();
        await using var harness = await RouteHarness<Item>.StartAsync(new InMemory(),
            routes => routes
                .From<Item>("items", r => r.Aggregate(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(2),
                    g => new Item(g.Key, string.Join("+", g.Messages.Select(m => m.Sku).Order(StringComparer.Ordinal))), to: "assembled"))
                .From<Item>("stream", r => r.Resequence(s => s.CorrelateBy(i => i.BatchId).SequenceBy(i => i.Sku.Length).Stream(TimeSpan.FromMinutes(1), startAt: 1), to: "ordered"))
                .From<Item>("claims", r => r.CheckIn().CheckOut<Item>(remove: false).To("restored")),
            ["assembled", "ordered", "restored"], services: PatternDatabase.Store<SchemaPatternsDbContext>(database));

        await harness.Send("items", new Item("b", "A"));
        await harness.Send("items", new Item("b", "B"));
        await harness.Send("stream", new Item("s", "XX"));
        await harness.Send("stream", new Item("s", "X"));
        await harness.Send("claims", new Item("c", "payload"));

        Assert.That((await harness.WaitFor("assembled")).Single().Message.Sku, Is.EqualTo("A+B"));
        Assert.That((await harness.WaitFor("ordered", 2)).Select(o => o.Message.Sku), Is.EqualTo(new[] { "X", "XX" }));
        Assert.That((await harness.WaitFor("restored")).Single().Message.Sku, Is.EqualTo("payload"));
        Assert.That(await Count(database, "patterns.integration_aggregation_groups"), Is.EqualTo(2), "the aggregator's group and the resequencer's stream");
        Assert.That(await Count(database, "patterns.integration_aggregation_messages"), Is.EqualTo(4));
        Assert.That(await Count(database, "patterns.integration_claims"), Is.EqualTo(1));
        Assert.That(await Scalar(database, "SELECT count(*) AS \"Value\" FROM pg_tables WHERE tablename LIKE 'integration_%' AND schemaname <> 'patterns'"), Is.Zero,
            "no pattern table outside the schema");
    }

    [Test]
    public void When_the_dbcontext_does_not_map_the_tables_should_fail_at_bus_start_naming_the_call()
    {
        var failure = Assert.ThrowsAsync<RouteConfigurationException>(async () =>
        {
            await using var harness = await RouteHarness<Item>.StartAsync(new InMemory(),
                routes => routes.From<Item>("items", r => r.Aggregate(a => a.CorrelateBy(i => i.BatchId).CompleteOnSize(2), g => g.Messages[0], to: "assembled")),
                [], services: s =>
                {
                    s.AddDbContext<UnmappedDbContext>(o => o.UseNpgsql("Host=unused"));
                    s.AddIntegrationPatternStore<UnmappedDbContext>();
                });
        });

        Assert.That(failure!.Message, Does.Contain("Route 'items', step 1 (Aggregate): UnmappedDbContext does not map the pattern tables; call modelBuilder.AddIntegrationPatterns()"));
    }

    static Task<long> Count(TestDatabase database, string table) => Scalar(database, $"SELECT count(*) AS \"Value\" FROM {table}");

    static async Task<long> Scalar(TestDatabase database, string sql)
    {
        await using var context = PatternDatabase.Open<SchemaPatternsDbContext>(database);
        return await context.Database.SqlQueryRaw<long>(sql).SingleAsync();
    }
}
