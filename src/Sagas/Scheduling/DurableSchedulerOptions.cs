using System.Text;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// Settings of the durable (Quartz on PostgreSQL) message scheduler, bound from <c>Integration:Scheduler</c> by
/// <c>AddIntegrationScheduler(...)</c> and validated at start (a bad value stops the host naming the full key, e.g.
/// <c>Integration:Scheduler:MaxConcurrency must be 1 to 1000, not 0</c>).
/// </summary>
public sealed class DurableSchedulerOptions
{
    /// <summary>The configuration section the options are bound from.</summary>
    public const string Section = "Integration:Scheduler";

    /// <summary>The host-wide service name the defaults fall back to.</summary>
    public const string HostServiceNameKey = "Integration:Host:ServiceName";

    /// <summary>
    /// The application the scheduler belongs to; the queue and the Quartz scheduler are named after it, so two
    /// applications on one virtual host and database never take each other's schedules. Default:
    /// <c>Integration:Host:ServiceName</c>, else <c>IHostEnvironment.ApplicationName</c> kebab-cased (<c>Shop.Worker</c> → <c>shop-worker</c>).
    /// </summary>
    public string? ServiceName { get; set; }

    /// <summary>Queue the scheduler consumes <c>ScheduleMessage</c> and cancel commands from. Default <c>{ServiceName}-scheduler</c>.</summary>
    public string? QueueName { get; set; }

    /// <summary>
    /// Quartz scheduler name (<c>sched_name</c> in the tables). Hosts with the same name and database form one cluster;
    /// a different name is an independent scheduler in the same tables. Default <c>{ServiceName}</c>.
    /// </summary>
    public string? SchedulerName { get; set; }

    /// <summary>The application's connection string the scheduler falls back to.</summary>
    public const string HostConnectionStringKey = "Integration:Postgres:ConnectionString";

    /// <summary>PostgreSQL connection string of the database holding the <c>qrtz_</c> tables. Default: <c>Integration:Postgres:ConnectionString</c>.</summary>
    public string? ConnectionString { get; set; }

    /// <summary>Resolves the connection string at start from the container (wins over <see cref="ConnectionString"/>), e.g. from options bound to configuration.</summary>
    public Func<IServiceProvider, string>? ConnectionStringFactory { get; set; }

    /// <summary>Prefix of the Quartz tables; must match <c>modelBuilder.AddIntegrationScheduler(prefix)</c>. Default <c>qrtz_</c>.</summary>
    public string TablePrefix { get; set; } = SchedulerModelBuilderExtensions.DefaultTablePrefix;

    /// <summary>Schema of the Quartz tables; must match <c>modelBuilder.AddIntegrationScheduler(schema: ...)</c>. Default: none (the search path).</summary>
    public string? Schema { get; set; }

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

    /// <summary>The host's queue type setting (<c>Quorum</c> makes <see cref="SendToExchange"/> the default).</summary>
    public const string HostQueueTypeKey = "Integration:RabbitMq:QueueType";

    /// <summary>
    /// Send to the scheduler's exchange (<c>exchange:{QueueName}</c>, bound to its queue by the scheduler's endpoint) rather
    /// than to <c>queue:{QueueName}</c>, which makes MassTransit re-declare the queue without arguments: a quorum queue
    /// refuses that. Default: true when <c>Integration:RabbitMq:QueueType</c> is <c>Quorum</c>.
    /// </summary>
    public bool? SendToExchange { get; set; }

    /// <summary>Address of the scheduler queue (<c>queue:{QueueName}</c>, or its exchange, see <see cref="SendToExchange"/>), once the options are resolved.</summary>
    public Uri SchedulerAddress => new($"{(SendToExchange == true ? "exchange" : "queue")}:{QueueName ?? throw new InvalidOperationException("DurableSchedulerOptions.QueueName is not resolved yet")}");

    /// <summary>Quartz's table prefix, schema-qualified when <see cref="Schema"/> is set.</summary>
    internal string QuartzTablePrefix => Schema is null ? TablePrefix : $"{Schema}.{TablePrefix}";

    internal string ResolveConnectionString(IServiceProvider services)
    {
        var value = ConnectionStringFactory?.Invoke(services) ?? ConnectionString;
        if (string.IsNullOrWhiteSpace(value))
            throw new InvalidOperationException($"The durable scheduler has no database: set {Section}:ConnectionString (or DurableSchedulerOptions.ConnectionStringFactory)");
        return value;
    }

    internal IEnumerable<string> Validate()
    {
        if (string.IsNullOrWhiteSpace(ServiceName) && (string.IsNullOrWhiteSpace(QueueName) || string.IsNullOrWhiteSpace(SchedulerName)))
        {
            yield return $"{Section}:ServiceName is required: neither {HostServiceNameKey} nor IHostEnvironment.ApplicationName gives one, and the queue " +
                "and the Quartz scheduler are named after it";
            yield break;
        }

        if (string.IsNullOrWhiteSpace(QueueName) || QueueName.Length > 255)
            yield return $"{Section}:QueueName must be 1 to 255 characters, not '{QueueName}'";
        if (string.IsNullOrWhiteSpace(SchedulerName) || SchedulerName.Length > 100)
            yield return $"{Section}:SchedulerName must be 1 to 100 characters, not '{SchedulerName}'";
        if (ConnectionStringFactory is null && string.IsNullOrWhiteSpace(ConnectionString))
            yield return $"{Section}:ConnectionString is required: set it, {HostConnectionStringKey} or DurableSchedulerOptions.ConnectionStringFactory";
        if (string.IsNullOrWhiteSpace(TablePrefix))
            yield return $"{Section}:TablePrefix is required";
        if (Schema is not null && string.IsNullOrWhiteSpace(Schema))
            yield return $"{Section}:Schema must not be blank";
        if (MaxConcurrency is < 1 or > 1000)
            yield return $"{Section}:MaxConcurrency must be 1 to 1000, not {MaxConcurrency}";
        if (CheckinInterval <= TimeSpan.Zero)
            yield return $"{Section}:CheckinInterval must be positive, not {CheckinInterval}";
        if (CheckinMisfireThreshold <= TimeSpan.Zero)
            yield return $"{Section}:CheckinMisfireThreshold must be positive, not {CheckinMisfireThreshold}";
        if (MisfireThreshold <= TimeSpan.Zero)
            yield return $"{Section}:MisfireThreshold must be positive, not {MisfireThreshold}";
    }

    /// <summary><c>Shop.OrderWorker</c> → <c>shop-order-worker</c>, <c>Integration.Host</c> → <c>integration-host</c>.</summary>
    internal static string KebabCase(string name)
    {
        var builder = new StringBuilder(name.Length + 8);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsLetterOrDigit(c))
            {
                var previous = i > 0 ? name[i - 1] : '\0';
                var next = i + 1 < name.Length ? name[i + 1] : '\0';
                if (char.IsUpper(c) && builder.Length > 0 && builder[^1] != '-'
                    && (char.IsLower(previous) || char.IsDigit(previous) || (char.IsUpper(previous) && char.IsLower(next))))
                    builder.Append('-');
                builder.Append(char.ToLowerInvariant(c));
            }
            else if (builder.Length > 0 && builder[^1] != '-')
            {
                builder.Append('-'); // '.', '_', ' ' and the like separate words
            }
        }

        return builder.ToString().Trim('-');
    }
}
