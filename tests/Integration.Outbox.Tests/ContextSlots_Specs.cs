using Integration.Outbox.Transactions;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Outbox.Tests;

/// <summary>The interceptors' state per DbContext instance: in the instance's own EF Core services, or in a weak table without them.</summary>
[TestFixture]
public sealed class ContextSlots_Specs
{
    const string NoDatabase = "Host=localhost;Port=1;Database=never_opened";

    static ShopDbContext Registered(out ServiceProvider provider)
    {
        var services = new ServiceCollection();
        services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(NoDatabase), optionsLifetime: ServiceLifetime.Singleton);
        services.ConfigureDbContext<ShopDbContext>((_, o) => ContextSlotsExtension.AddTo(o), ServiceLifetime.Singleton);
        provider = services.BuildServiceProvider();
        return provider.CreateScope().ServiceProvider.GetRequiredService<ShopDbContext>();
    }

    [Test]
    public void When_the_options_carry_the_extension_should_keep_each_instance_its_own_state()
    {
        var table = new ContextTable<string>();
        var first = Registered(out var provider);
        using var owner = provider;
        var second = provider.CreateScope().ServiceProvider.GetRequiredService<ShopDbContext>();

        table.AddOrUpdate(first, "first");

        Assert.Multiple(() =>
        {
            Assert.That(first.GetService<ContextSlots>(), Is.Not.Null, "the slots are a scoped service of EF Core's per-context provider");
            Assert.That(table.TryGetValue(first, out var value) ? value : null, Is.EqualTo("first"));
            Assert.That(table.TryGetValue(second, out _), Is.False, "another instance has nothing");
        });
        table.AddOrUpdate(first, "again");
        Assert.That(table.TryGetValue(first, out var replaced) ? replaced : null, Is.EqualTo("again"));
        table.Remove(first);
        Assert.That(table.TryGetValue(first, out _), Is.False);
    }

    [Test]
    public void When_two_tables_share_an_instance_should_keep_their_values_apart()
    {
        var (a, b) = (new ContextTable<string>(), new ContextTable<string>());
        var db = Registered(out var provider);
        using var owner = provider;

        a.AddOrUpdate(db, "a");
        b.AddOrUpdate(db, "b");
        a.Remove(db);

        Assert.Multiple(() =>
        {
            Assert.That(a.TryGetValue(db, out _), Is.False);
            Assert.That(b.TryGetValue(db, out var value) ? value : null, Is.EqualTo("b"));
        });
    }

    [Test]
    public void When_the_options_were_built_without_the_extension_should_keep_the_state_all_the_same()
    {
        var options = new DbContextOptionsBuilder<ShopDbContext>().UseNpgsql(NoDatabase).Options;
        using var db = new ShopDbContext(options);
        var table = new ContextTable<string>();

        table.AddOrUpdate(db, "kept");

        Assert.Multiple(() =>
        {
            Assert.That(table.TryGetValue(db, out var value) ? value : null, Is.EqualTo("kept"), "a weak table keyed by the instance");
            Assert.That(table.TryGetValue(new ShopDbContext(options), out _), Is.False);
        });
    }

    [Test]
    public void When_the_instance_is_disposed_should_report_nothing_rather_than_throw()
    {
        var db = Registered(out var provider);
        using var owner = provider;
        var table = new ContextTable<string>();
        table.AddOrUpdate(db, "gone");

        db.Dispose();

        Assert.Multiple(() =>
        {
            Assert.That(table.TryGetValue(db, out _), Is.False);
            Assert.DoesNotThrow(() => table.Remove(db));
        });
    }
}
