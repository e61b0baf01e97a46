using Integration.Host.Persistence;
using Microsoft.EntityFrameworkCore;
using NUnit.Framework;

namespace Integration.Host.Tests;

/// <summary>The host's migrations describe its model: a model change without a migration fails here, not in production.</summary>
[TestFixture]
public sealed class Migrations_Specs
{
    [Test]
    public void When_the_model_is_compared_with_the_migrations_should_have_no_pending_changes()
    {
        using var db = new DesignTimeHostDbContextFactory().CreateDbContext([]);

        Assert.That(db.Database.GetMigrations(), Is.Not.Empty, "the host has no migrations");
        Assert.That(db.Database.HasPendingModelChanges(), Is.False,
            "the model changed without a migration: run `dotnet ef migrations add <Name> --project src/Host`");
    }
}
