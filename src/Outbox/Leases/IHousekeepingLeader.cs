using Microsoft.Extensions.DependencyInjection;

namespace Integration.Outbox.Leases;

/// <summary>Whether this process is the one that runs housekeeping now (<c>AddIntegrationHousekeeping&lt;TDbContext&gt;()</c>).</summary>
public interface IHousekeepingLeader
{
    /// <summary>True while this process holds the housekeeping lease.</summary>
    bool IsLeader { get; }

    /// <summary>This process's name in the election.</summary>
    string Instance { get; }

    /// <summary>The instance holding the lease when last checked (this one or another), null when nobody held it or it is not known yet.</summary>
    string? Leader { get; }

    /// <summary>
    /// Asks before a periodic housekeeping pass: true (and the pass is counted on <c>integration.housekeeping.runs</c>
    /// with the tag <c>job</c>) when this process leads, false when another does.
    /// </summary>
    bool TryRun(string job);
}

/// <summary>The one question a periodic job asks.</summary>
public static class HousekeepingLeaderExtensions
{
    /// <summary>
    /// True when this process should run the housekeeping pass <paramref name="job"/> now: it is the leader, or no
    /// election is registered (then every host runs it, as before).
    /// </summary>
    public static bool HousekeepingMayRun(this IServiceProvider services, string job)
    {
        ArgumentNullException.ThrowIfNull(services);
        return services.GetService<IHousekeepingLeader>() is not { } leader || leader.TryRun(job);
    }
}
