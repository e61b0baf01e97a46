namespace Integration.Sagas.Scheduling;

/// <summary>Settings of the durable (Quartz on PostgreSQL) message scheduler.</summary>
public sealed class DurableSchedulerOptions
{
    /// <summary>Queue the scheduler consumes <c>ScheduleMessage</c> and cancel commands from. Default <c>scheduler</c>.</summary>
    public string QueueName { get; set; } = "scheduler";

    /// <summary>
    /// Quartz scheduler name (<c>sched_name</c> in the tables). Hosts with the same name and database form one cluster;
    /// a different name is an independent scheduler in the same tables. Default <c>integration</c>.
    /// </summary>
    public string SchedulerName { get; set; } = "integration";

    /// <summary>PostgreSQL connection string of the database holding the <c>qrtz_</c> tables.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Resolves the connection string at start from the container (wins over <see cref="ConnectionString"/>), e.g. from options bound to configuration.</summary>
    public Func<IServiceProvider, string>? ConnectionStringFactory { get; set; }

    /// <summary>Prefix of the Quartz tables; must match <c>modelBuilder.AddQuartzSchema(prefix)</c>. Default <c>qrtz_</c>.</summary>
    public string TablePrefix { get; set; } = QuartzSchema.DefaultTablePrefix;

    /// <summary>Cluster the hosts sharing the database: each due message fires on exactly one of them, and a dead host's messages are recovered by the others. Default true.</summary>
    public bool Clustered { get; set; } = true;

    /// <summary>How often a clustered host records that it is alive. Default 10 s.</summary>
    public TimeSpan CheckinInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long past a missed check-in the others recover a host's messages. Default 20 s.</summary>
    public TimeSpan CheckinMisfireThreshold { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>How late a message may fire before Quartz treats it as misfired; misfired messages are still delivered, at once. Default 60 s.</summary>
    public TimeSpan MisfireThreshold { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How many due messages are delivered in parallel. Default 10.</summary>
    public int MaxConcurrency { get; set; } = 10;

    /// <summary>Address of the scheduler queue for <c>UseMessageScheduler</c>.</summary>
    public Uri SchedulerAddress => new($"queue:{QueueName}");

    internal string ResolveConnectionString(IServiceProvider services)
    {
        var value = ConnectionStringFactory?.Invoke(services) ?? ConnectionString;
        if (string.IsNullOrWhiteSpace(value))
            throw new InvalidOperationException("The durable scheduler has no database: set DurableSchedulerOptions.ConnectionString or ConnectionStringFactory");
        return value;
    }

    /// <summary>Checks the settings; throws naming the setting when one is invalid.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(QueueName))
            throw new ArgumentException("DurableSchedulerOptions.QueueName is required", nameof(QueueName));
        if (string.IsNullOrWhiteSpace(SchedulerName) || SchedulerName.Length > 100)
            throw new ArgumentException("DurableSchedulerOptions.SchedulerName is required, at most 100 characters", nameof(SchedulerName));
        if (ConnectionString is null && ConnectionStringFactory is null)
            throw new ArgumentException("DurableSchedulerOptions: set ConnectionString or ConnectionStringFactory", nameof(ConnectionString));
        if (string.IsNullOrWhiteSpace(TablePrefix))
            throw new ArgumentException("DurableSchedulerOptions.TablePrefix is required", nameof(TablePrefix));
        if (MaxConcurrency is < 1 or > 1000)
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrency), MaxConcurrency, "DurableSchedulerOptions.MaxConcurrency must be 1 to 1000");
        if (CheckinInterval <= TimeSpan.Zero || CheckinMisfireThreshold <= TimeSpan.Zero || MisfireThreshold <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(CheckinInterval), "DurableSchedulerOptions: CheckinInterval, CheckinMisfireThreshold and MisfireThreshold must be positive");
    }
}
