using Microsoft.EntityFrameworkCore;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// The durable scheduler's tables (Quartz 4's PostgreSQL job store), as an EF Core model, so they land in the application's migrations next to
/// its own tables (no script to run by hand, nothing created behind the migrations' back). The definition follows
/// Quartz's own <c>create_postgres.sql</c>; a spec compares the two.
/// </summary>
public static class SchedulerModelBuilderExtensions
{
    /// <summary>Quartz's default table prefix.</summary>
    public const string DefaultTablePrefix = "qrtz_";

    const string SchedName = "sched_name";

    /// <summary>
    /// Adds the durable scheduler's tables (Quartz's, prefixed with <paramref name="tablePrefix"/>, snake_case as Quartz
    /// names them) to the model, in <paramref name="schema"/> when given. Use the same prefix and schema in
    /// <c>DurableSchedulerOptions.TablePrefix</c>/<c>Schema</c> (<c>Integration:Scheduler:TablePrefix</c>/<c>Schema</c>).
    /// </summary>
    public static ModelBuilder AddIntegrationScheduler(this ModelBuilder modelBuilder, string tablePrefix = DefaultTablePrefix, string? schema = null)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        ArgumentException.ThrowIfNullOrWhiteSpace(tablePrefix);
        if (schema is not null)
            ArgumentException.ThrowIfNullOrWhiteSpace(schema);
        foreach (var table in Tables)
        {
            var name = tablePrefix + table.Name;
            modelBuilder.SharedTypeEntity<Dictionary<string, object>>(name, entity =>
            {
                entity.ToTable(name, schema);
                foreach (var column in table.Columns)
                {
                    var property = entity.IndexerProperty(column.ClrType, column.Name).HasColumnName(column.Name).HasColumnType(column.StoreType)
                        .IsRequired(!column.Nullable);
                    if (column.Default is not null)
                        property.HasDefaultValue(column.Default);
                }

                entity.HasKey(table.Key).HasName($"pk_{name}");
                foreach (var index in table.Indexes)
                {
                    var indexName = $"idx_{tablePrefix}{index.Name}";
                    var builder = entity.HasIndex(index.Columns, indexName);
                    if (index.Descending is not null)
                        builder.IsDescending(index.Descending);
                }
            });
        }

        foreach (var table in Tables.Where(t => t.Parent is not null))
        {
            var (parent, columns, cascade) = table.Parent!.Value;
            modelBuilder.SharedTypeEntity<Dictionary<string, object>>(tablePrefix + table.Name)
                .HasOne(tablePrefix + parent, null).WithMany().HasForeignKey(columns).HasPrincipalKey(columns)
                .OnDelete(cascade ? DeleteBehavior.Cascade : DeleteBehavior.NoAction)
                .HasConstraintName($"fk_{tablePrefix}{table.Name}_{parent}");
        }

        return modelBuilder;
    }

    /// <summary>The tables, columns and store types of the schema (without the prefix), for checks against Quartz's own script.</summary>
    internal static IReadOnlyList<(string Table, IReadOnlyList<(string Column, string StoreType, bool Nullable)> Columns)> Definition =>
        Tables.Select(t => (t.Name, (IReadOnlyList<(string, string, bool)>)t.Columns.Select(c => (c.Name, c.StoreType, c.Nullable)).ToList())).ToList();

    sealed record Column(string Name, string StoreType, bool Nullable = false, object? Default = null)
    {
        public Type ClrType => (StoreType, Nullable) switch
        {
            ("bool", false) => typeof(bool),
            ("bool", true) => typeof(bool?),
            ("bigint", false) => typeof(long),
            ("bigint", true) => typeof(long?),
            ("integer", false) => typeof(int),
            ("integer", true) => typeof(int?),
            ("smallint", false) => typeof(short),
            ("smallint", true) => typeof(short?),
            ("numeric", _) => typeof(decimal?),
            ("bytea", _) => typeof(byte[]),
            _ => typeof(string),
        };
    }

    sealed record Index(string Name, string[] Columns, bool[]? Descending = null);

    sealed record Table(string Name, string[] Key, Column[] Columns, Index[] Indexes, (string Table, string[] Columns, bool Cascade)? Parent = null);

    static Column Text(string name, bool nullable = false) => new(name, "text", nullable);

    static Column Varchar(string name, int length) => new(name, $"varchar({length})", true);

    static readonly string[] TriggerKey = [SchedName, "trigger_name", "trigger_group"];

    static Column[] TriggerKeyColumns => [Text(SchedName), Text("trigger_name"), Text("trigger_group")];

    static readonly Table[] Tables =
    [
        new("job_details", [SchedName, "job_name", "job_group"],
        [
            Text(SchedName), Text("job_name"), Text("job_group"), Text("description", true), Text("job_class_name"),
            new("is_durable", "bool"), new("is_nonconcurrent", "bool"), new("is_update_data", "bool"), new("requests_recovery", "bool"),
            new("job_data", "bytea", true),
        ], [new("j_g_n", [SchedName, "job_group", "job_name"])]),
        new("triggers", TriggerKey,
        [
            .. TriggerKeyColumns, Text("job_name"), Text("job_group"), Text("description", true),
            new("next_fire_time", "bigint", true), new("prev_fire_time", "bigint", true), new("priority", "integer", true),
            Text("trigger_state"), Text("trigger_type"), new("start_time", "bigint"), new("end_time", "bigint", true),
            Text("calendar_name", true), new("misfire_instr", "smallint", true), new("misfire_orig_fire_time", "bigint", true),
            Varchar("execution_group", 200), Varchar("preferred_node", 200), new("preferred_node_auto", "bool", Default: false),
            Varchar("retry_policy", 250), new("retry_attempt", "integer", true), Text("continues_trigger_name", true),
            Text("continues_trigger_group", true), new("continuation_condition", "integer", true), new("overlap_policy", "integer", true),
            Varchar("pause_reason", 250), Varchar("paused_by", 200), new("paused_at", "bigint", true), new("misfire_threshold", "bigint", true),
            new("fixed_delay", "bool", true), new("job_data", "bytea", true),
        ],
        [
            new("t_j", [SchedName, "job_name", "job_group"]),
            new("t_g_n", [SchedName, "trigger_group", "trigger_name"]),
            new("t_c", [SchedName, "calendar_name"]),
            new("t_nft_st", [SchedName, "trigger_state", "next_fire_time", "priority", "misfire_instr"], [false, false, false, true, false]),
        ], ("job_details", [SchedName, "job_name", "job_group"], false)),
        new("simple_triggers", TriggerKey,
        [
            .. TriggerKeyColumns, new("repeat_count", "bigint"), new("repeat_interval", "bigint"), new("times_triggered", "bigint"),
        ], [], ("triggers", TriggerKey, true)),
        new("cron_triggers", TriggerKey,
        [
            .. TriggerKeyColumns, Text("cron_expression"), Text("time_zone_id", true),
        ], [], ("triggers", TriggerKey, true)),
        new("simprop_triggers", TriggerKey,
        [
            .. TriggerKeyColumns, Text("str_prop_1", true), Text("str_prop_2", true), Text("str_prop_3", true),
            new("int_prop_1", "integer", true), new("int_prop_2", "integer", true), new("long_prop_1", "bigint", true),
            new("long_prop_2", "bigint", true), new("dec_prop_1", "numeric", true), new("dec_prop_2", "numeric", true),
            new("bool_prop_1", "bool", true), new("bool_prop_2", "bool", true), Text("time_zone_id", true),
        ], [], ("triggers", TriggerKey, true)),
        new("blob_triggers", TriggerKey,
        [
            .. TriggerKeyColumns, new("blob_data", "bytea", true),
        ], [], ("triggers", TriggerKey, true)),
        new("calendars", [SchedName, "calendar_name"],
        [
            Text(SchedName), Text("calendar_name"), new("calendar", "bytea"),
        ], []),
        new("paused_trigger_grps", [SchedName, "trigger_group"],
        [
            Text(SchedName), Text("trigger_group"), Varchar("pause_reason", 250), Varchar("paused_by", 200), new("paused_at", "bigint", true),
        ], []),
        new("paused_job_grps", [SchedName, "job_group"],
        [
            Text(SchedName), Text("job_group"), Varchar("pause_reason", 250), Varchar("paused_by", 200), new("paused_at", "bigint", true),
        ], []),
        new("fired_triggers", [SchedName, "entry_id"],
        [
            Text(SchedName), Text("entry_id"), Text("trigger_name"), Text("trigger_group"), Text("instance_name"),
            new("fired_time", "bigint"), new("sched_time", "bigint"), new("priority", "integer"), Text("state"),
            Text("job_name", true), Text("job_group", true), new("is_nonconcurrent", "bool"), new("requests_recovery", "bool", true),
            Varchar("execution_group", 200), new("progress", "integer", true), Varchar("progress_message", 250),
            new("interrupt_requested_time", "bigint", true),
        ],
        [
            new("ft_inst_job_req_rcvry", [SchedName, "instance_name", "requests_recovery"]),
            new("ft_j_g", [SchedName, "job_name", "job_group"]),
            new("ft_t_g", [SchedName, "trigger_name", "trigger_group"]),
        ]),
        new("scheduler_state", [SchedName, "instance_name"],
        [
            Text(SchedName), Text("instance_name"), new("last_checkin_time", "bigint"), new("checkin_interval", "bigint"),
            Varchar("quartz_version", 20),
        ], []),
        new("locks", [SchedName, "lock_name"],
        [
            Text(SchedName), Text("lock_name"),
        ], []),
        new("execution_history", [SchedName, "entry_id"],
        [
            Text(SchedName), Text("entry_id"), Text("instance_name"), Text("job_name"), Text("job_group"), Text("trigger_name"),
            Text("trigger_group"), new("fired_time", "bigint"), new("run_time", "bigint"), new("succeeded", "bool"),
            Text("error_message", true), new("retry_attempt", "integer", Default: 0), new("retry_scheduled", "bool", Default: false),
            Text("execution_log", true), new("result", "integer", true), Text("summary", true), Text("metrics", true),
            new("manual", "bool", true), Text("fire_instance_id", true), Text("job_input", true), new("job_input_too_large", "bool", true),
        ],
        [
            new("eh_fired_time", [SchedName, "fired_time"]),
            new("eh_inst", [SchedName, "instance_name"]),
            new("eh_job_time", [SchedName, "job_group", "job_name", "fired_time"]),
            new("eh_fire_inst", [SchedName, "fire_instance_id"]),
            new("eh_trig_time", [SchedName, "trigger_group", "trigger_name", "fired_time"]),
        ]),
        new("misfire_history", [SchedName, "entry_id"],
        [
            Text(SchedName), Text("entry_id"), Text("instance_name"), Text("trigger_name"), Text("trigger_group"),
            Text("job_name", true), Text("job_group", true), new("misfire_time", "bigint"), new("sched_time", "bigint", true),
            new("reason", "integer", true),
        ],
        [
            new("mh_misfire_time", [SchedName, "misfire_time"]),
            new("mh_inst", [SchedName, "instance_name"]),
        ]),
        new("job_status", [SchedName, "job_group", "job_name"],
        [
            Text(SchedName), Text("job_group"), Text("job_name"), new("first_fired_time", "bigint"), new("last_fired_time", "bigint"),
            new("last_result", "integer"), new("last_run_time", "bigint"), Text("last_instance_name"), Text("last_entry_id", true),
            Text("last_summary", true), new("last_success_time", "bigint", true), new("last_failure_time", "bigint", true),
            Text("last_failure_message", true), new("consecutive_failures", "integer", Default: 0), new("run_count", "bigint", Default: 0L),
            new("failure_count", "bigint", Default: 0L),
        ], []),
    ];
}
