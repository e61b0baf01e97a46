using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Integration.Testing;

/// <summary>Finds the host's DbContexts that map an entity type.</summary>
static class HostDbContexts
{
    internal static IReadOnlyList<Type> Mapping(IServiceProvider services, IReadOnlyList<Type> dbContextTypes, Type entity)
    {
        using var scope = services.CreateScope();
        return dbContextTypes
            .Where(type => scope.ServiceProvider.GetService(type) is DbContext db && db.Model.FindEntityType(entity) is not null)
            .ToList();
    }

    internal static string Names(IReadOnlyList<Type> types) => types.Count == 0 ? "none" : string.Join(", ", types.Select(t => t.Name));
}
