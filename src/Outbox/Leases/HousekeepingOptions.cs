namespace Integration.Outbox.Leases;

/// <summary>
/// Housekeeping runs once across hosts: the hosts sharing a database elect a leader with a lease
/// (<see cref="PostgresLeaderLease"/>) and only the leader runs the periodic cleanups (outbox and inbox retention,
/// claim-check expiry, aggregator and resequencer sweeps, message store retention). Bound from <c>Integration:Housekeeping</c>,
/// validated at start.
/// </summary>
public sealed class HousekeepingOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Integration:Housekeeping";

    /// <summary>False: no election, every host runs housekeeping (as without the registration). Default true.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// The lease name: hosts with the same name on the same database elect one leader. Give each service its own
    /// name when several services share a database and each has housekeeping of its own. Default <c>integration-housekeeping</c>.
    /// </summary>
    public string LeaseName { get; set; } = "integration-housekeeping";

    /// <summary>
    /// The longest a healthy standby waits to take over after the leader is gone (stopped, crashed, its database
    /// session cut): standbys try to take the lease, and the leader confirms it still holds it, every third of it.
    /// 1 second to 10 minutes; default 15 seconds.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How this process appears as the leader (health data, logs). Default <c>{machine}-{process id}-{random}</c>; at most 40 characters.</summary>
    public string? Instance { get; set; }

    /// <summary>A third of <see cref="LeaseDuration"/>: how often the lease is tried or confirmed.</summary>
    internal TimeSpan CheckInterval => LeaseDuration / 3;

    internal IEnumerable<string> Validate()
    {
        if (string.IsNullOrWhiteSpace(LeaseName))
            yield return $"{Section}:LeaseName must not be empty";
        if (LeaseDuration < TimeSpan.FromSeconds(1) || LeaseDuration > TimeSpan.FromMinutes(10))
            yield return $"{Section}:LeaseDuration must be between 00:00:01 and 00:10:00, not {LeaseDuration}";
        if (Instance is not null && (string.IsNullOrWhiteSpace(Instance) || Instance.Length > 40))
            yield return $"{Section}:Instance must be 1 to 40 characters, not '{Instance}'";
    }
}
