using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace Acme.Worker.Migrations
{
    /// <inheritdoc />
    public partial class Initial : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "control_audit",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    actor = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    channel = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    action = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    target = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    details = table.Column<string>(type: "text", nullable: true),
                    outcome = table.Column<string>(type: "character varying(32)", maxLength: 32, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_control_audit", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "inbox_states",
                columns: table => new
                {
                    message_id = table.Column<Guid>(type: "uuid", nullable: false),
                    consumer = table.Column<string>(type: "character varying(255)", maxLength: 255, nullable: false),
                    received_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_inbox_states", x => new { x.message_id, x.consumer });
                });

            migrationBuilder.CreateTable(
                name: "invoice_state",
                columns: table => new
                {
                    correlation_id = table.Column<Guid>(type: "uuid", nullable: false),
                    current_state = table.Column<string>(type: "text", nullable: false),
                    amount = table.Column<decimal>(type: "numeric", nullable: false),
                    overdue_token = table.Column<Guid>(type: "uuid", nullable: true),
                    xmin = table.Column<uint>(type: "xid", rowVersion: true, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_invoice_state", x => x.correlation_id);
                });

            migrationBuilder.CreateTable(
                name: "invoices",
                columns: table => new
                {
                    InvoiceId = table.Column<Guid>(type: "uuid", nullable: false),
                    Amount = table.Column<decimal>(type: "numeric", nullable: false),
                    CreatedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_invoices", x => x.InvoiceId);
                });

            migrationBuilder.CreateTable(
                name: "message_store",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    stored_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    exchange = table.Column<string>(type: "character varying(255)", maxLength: 255, nullable: false),
                    message_id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    correlation_id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    conversation_id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    initiator_id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    message_type = table.Column<string>(type: "character varying(500)", maxLength: 500, nullable: true),
                    content_type = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: true),
                    headers = table.Column<string>(type: "jsonb", nullable: false),
                    history = table.Column<string>(type: "jsonb", nullable: true),
                    body = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_message_store", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "outbox_messages",
                columns: table => new
                {
                    sequence = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    transaction_id = table.Column<Guid>(type: "uuid", nullable: false),
                    message_id = table.Column<Guid>(type: "uuid", nullable: false),
                    destination = table.Column<string>(type: "character varying(1000)", maxLength: 1000, nullable: true),
                    message_type = table.Column<string>(type: "character varying(1000)", maxLength: 1000, nullable: false),
                    body = table.Column<string>(type: "jsonb", nullable: false),
                    correlation_id = table.Column<Guid>(type: "uuid", nullable: true),
                    created_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    trace_parent = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: true),
                    trace_state = table.Column<string>(type: "character varying(512)", maxLength: 512, nullable: true),
                    envelope = table.Column<string>(type: "jsonb", nullable: true),
                    lock_token = table.Column<Guid>(type: "uuid", nullable: true),
                    locked_until = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true),
                    attempts = table.Column<int>(type: "integer", nullable: false),
                    last_error = table.Column<string>(type: "character varying(2000)", maxLength: 2000, nullable: true),
                    delivered_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_outbox_messages", x => x.sequence);
                });

            migrationBuilder.CreateTable(
                name: "qrtz_calendars",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    calendar_name = table.Column<string>(type: "text", nullable: false),
                    calendar = table.Column<byte[]>(type: "bytea", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_calendars", x => new { x.sched_name, x.calendar_name });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_execution_history",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    entry_id = table.Column<string>(type: "text", nullable: false),
                    error_message = table.Column<string>(type: "text", nullable: true),
                    execution_log = table.Column<string>(type: "text", nullable: true),
                    fire_instance_id = table.Column<string>(type: "text", nullable: true),
                    fired_time = table.Column<long>(type: "bigint", nullable: false),
                    instance_name = table.Column<string>(type: "text", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: false),
                    job_input = table.Column<string>(type: "text", nullable: true),
                    job_input_too_large = table.Column<bool>(type: "bool", nullable: true),
                    job_name = table.Column<string>(type: "text", nullable: false),
                    manual = table.Column<bool>(type: "bool", nullable: true),
                    metrics = table.Column<string>(type: "text", nullable: true),
                    result = table.Column<int>(type: "integer", nullable: true),
                    retry_attempt = table.Column<int>(type: "integer", nullable: false, defaultValue: 0),
                    retry_scheduled = table.Column<bool>(type: "bool", nullable: false, defaultValue: false),
                    run_time = table.Column<long>(type: "bigint", nullable: false),
                    succeeded = table.Column<bool>(type: "bool", nullable: false),
                    summary = table.Column<string>(type: "text", nullable: true),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_execution_history", x => new { x.sched_name, x.entry_id });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_fired_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    entry_id = table.Column<string>(type: "text", nullable: false),
                    execution_group = table.Column<string>(type: "varchar(200)", nullable: true),
                    fired_time = table.Column<long>(type: "bigint", nullable: false),
                    instance_name = table.Column<string>(type: "text", nullable: false),
                    interrupt_requested_time = table.Column<long>(type: "bigint", nullable: true),
                    is_nonconcurrent = table.Column<bool>(type: "bool", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: true),
                    job_name = table.Column<string>(type: "text", nullable: true),
                    priority = table.Column<int>(type: "integer", nullable: false),
                    progress = table.Column<int>(type: "integer", nullable: true),
                    progress_message = table.Column<string>(type: "varchar(250)", nullable: true),
                    requests_recovery = table.Column<bool>(type: "bool", nullable: true),
                    sched_time = table.Column<long>(type: "bigint", nullable: false),
                    state = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_fired_triggers", x => new { x.sched_name, x.entry_id });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_job_details",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    job_name = table.Column<string>(type: "text", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: false),
                    description = table.Column<string>(type: "text", nullable: true),
                    is_durable = table.Column<bool>(type: "bool", nullable: false),
                    is_nonconcurrent = table.Column<bool>(type: "bool", nullable: false),
                    is_update_data = table.Column<bool>(type: "bool", nullable: false),
                    job_class_name = table.Column<string>(type: "text", nullable: false),
                    job_data = table.Column<byte[]>(type: "bytea", nullable: true),
                    requests_recovery = table.Column<bool>(type: "bool", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_job_details", x => new { x.sched_name, x.job_name, x.job_group });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_job_status",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: false),
                    job_name = table.Column<string>(type: "text", nullable: false),
                    consecutive_failures = table.Column<int>(type: "integer", nullable: false, defaultValue: 0),
                    failure_count = table.Column<long>(type: "bigint", nullable: false, defaultValue: 0L),
                    first_fired_time = table.Column<long>(type: "bigint", nullable: false),
                    last_entry_id = table.Column<string>(type: "text", nullable: true),
                    last_failure_message = table.Column<string>(type: "text", nullable: true),
                    last_failure_time = table.Column<long>(type: "bigint", nullable: true),
                    last_fired_time = table.Column<long>(type: "bigint", nullable: false),
                    last_instance_name = table.Column<string>(type: "text", nullable: false),
                    last_result = table.Column<int>(type: "integer", nullable: false),
                    last_run_time = table.Column<long>(type: "bigint", nullable: false),
                    last_success_time = table.Column<long>(type: "bigint", nullable: true),
                    last_summary = table.Column<string>(type: "text", nullable: true),
                    run_count = table.Column<long>(type: "bigint", nullable: false, defaultValue: 0L)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_job_status", x => new { x.sched_name, x.job_group, x.job_name });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_locks",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    lock_name = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_locks", x => new { x.sched_name, x.lock_name });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_misfire_history",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    entry_id = table.Column<string>(type: "text", nullable: false),
                    instance_name = table.Column<string>(type: "text", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: true),
                    job_name = table.Column<string>(type: "text", nullable: true),
                    misfire_time = table.Column<long>(type: "bigint", nullable: false),
                    reason = table.Column<int>(type: "integer", nullable: true),
                    sched_time = table.Column<long>(type: "bigint", nullable: true),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_misfire_history", x => new { x.sched_name, x.entry_id });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_paused_job_grps",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    job_group = table.Column<string>(type: "text", nullable: false),
                    pause_reason = table.Column<string>(type: "varchar(250)", nullable: true),
                    paused_at = table.Column<long>(type: "bigint", nullable: true),
                    paused_by = table.Column<string>(type: "varchar(200)", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_paused_job_grps", x => new { x.sched_name, x.job_group });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_paused_trigger_grps",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    pause_reason = table.Column<string>(type: "varchar(250)", nullable: true),
                    paused_at = table.Column<long>(type: "bigint", nullable: true),
                    paused_by = table.Column<string>(type: "varchar(200)", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_paused_trigger_grps", x => new { x.sched_name, x.trigger_group });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_scheduler_state",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    instance_name = table.Column<string>(type: "text", nullable: false),
                    checkin_interval = table.Column<long>(type: "bigint", nullable: false),
                    last_checkin_time = table.Column<long>(type: "bigint", nullable: false),
                    quartz_version = table.Column<string>(type: "varchar(20)", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_scheduler_state", x => new { x.sched_name, x.instance_name });
                });

            migrationBuilder.CreateTable(
                name: "saga_timeline",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    saga = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    correlation_id = table.Column<Guid>(type: "uuid", nullable: false),
                    at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    @event = table.Column<string>(name: "event", type: "character varying(200)", maxLength: 200, nullable: false),
                    from_state = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    to_state = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    message_id = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: true),
                    sent = table.Column<string>(type: "jsonb", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_saga_timeline", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "qrtz_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    calendar_name = table.Column<string>(type: "text", nullable: true),
                    continuation_condition = table.Column<int>(type: "integer", nullable: true),
                    continues_trigger_group = table.Column<string>(type: "text", nullable: true),
                    continues_trigger_name = table.Column<string>(type: "text", nullable: true),
                    description = table.Column<string>(type: "text", nullable: true),
                    end_time = table.Column<long>(type: "bigint", nullable: true),
                    execution_group = table.Column<string>(type: "varchar(200)", nullable: true),
                    fixed_delay = table.Column<bool>(type: "bool", nullable: true),
                    job_data = table.Column<byte[]>(type: "bytea", nullable: true),
                    job_group = table.Column<string>(type: "text", nullable: false),
                    job_name = table.Column<string>(type: "text", nullable: false),
                    misfire_instr = table.Column<short>(type: "smallint", nullable: true),
                    misfire_orig_fire_time = table.Column<long>(type: "bigint", nullable: true),
                    misfire_threshold = table.Column<long>(type: "bigint", nullable: true),
                    next_fire_time = table.Column<long>(type: "bigint", nullable: true),
                    overlap_policy = table.Column<int>(type: "integer", nullable: true),
                    pause_reason = table.Column<string>(type: "varchar(250)", nullable: true),
                    paused_at = table.Column<long>(type: "bigint", nullable: true),
                    paused_by = table.Column<string>(type: "varchar(200)", nullable: true),
                    preferred_node = table.Column<string>(type: "varchar(200)", nullable: true),
                    preferred_node_auto = table.Column<bool>(type: "bool", nullable: false, defaultValue: false),
                    prev_fire_time = table.Column<long>(type: "bigint", nullable: true),
                    priority = table.Column<int>(type: "integer", nullable: true),
                    retry_attempt = table.Column<int>(type: "integer", nullable: true),
                    retry_policy = table.Column<string>(type: "varchar(250)", nullable: true),
                    start_time = table.Column<long>(type: "bigint", nullable: false),
                    trigger_state = table.Column<string>(type: "text", nullable: false),
                    trigger_type = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_triggers", x => new { x.sched_name, x.trigger_name, x.trigger_group });
                    table.ForeignKey(
                        name: "fk_qrtz_triggers_job_details",
                        columns: x => new { x.sched_name, x.job_name, x.job_group },
                        principalTable: "qrtz_job_details",
                        principalColumns: new[] { "sched_name", "job_name", "job_group" });
                });

            migrationBuilder.CreateTable(
                name: "qrtz_blob_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    blob_data = table.Column<byte[]>(type: "bytea", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_blob_triggers", x => new { x.sched_name, x.trigger_name, x.trigger_group });
                    table.ForeignKey(
                        name: "fk_qrtz_blob_triggers_triggers",
                        columns: x => new { x.sched_name, x.trigger_name, x.trigger_group },
                        principalTable: "qrtz_triggers",
                        principalColumns: new[] { "sched_name", "trigger_name", "trigger_group" },
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "qrtz_cron_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    cron_expression = table.Column<string>(type: "text", nullable: false),
                    time_zone_id = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_cron_triggers", x => new { x.sched_name, x.trigger_name, x.trigger_group });
                    table.ForeignKey(
                        name: "fk_qrtz_cron_triggers_triggers",
                        columns: x => new { x.sched_name, x.trigger_name, x.trigger_group },
                        principalTable: "qrtz_triggers",
                        principalColumns: new[] { "sched_name", "trigger_name", "trigger_group" },
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "qrtz_simple_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    repeat_count = table.Column<long>(type: "bigint", nullable: false),
                    repeat_interval = table.Column<long>(type: "bigint", nullable: false),
                    times_triggered = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_simple_triggers", x => new { x.sched_name, x.trigger_name, x.trigger_group });
                    table.ForeignKey(
                        name: "fk_qrtz_simple_triggers_triggers",
                        columns: x => new { x.sched_name, x.trigger_name, x.trigger_group },
                        principalTable: "qrtz_triggers",
                        principalColumns: new[] { "sched_name", "trigger_name", "trigger_group" },
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "qrtz_simprop_triggers",
                columns: table => new
                {
                    sched_name = table.Column<string>(type: "text", nullable: false),
                    trigger_name = table.Column<string>(type: "text", nullable: false),
                    trigger_group = table.Column<string>(type: "text", nullable: false),
                    bool_prop_1 = table.Column<bool>(type: "bool", nullable: true),
                    bool_prop_2 = table.Column<bool>(type: "bool", nullable: true),
                    dec_prop_1 = table.Column<decimal>(type: "numeric", nullable: true),
                    dec_prop_2 = table.Column<decimal>(type: "numeric", nullable: true),
                    int_prop_1 = table.Column<int>(type: "integer", nullable: true),
                    int_prop_2 = table.Column<int>(type: "integer", nullable: true),
                    long_prop_1 = table.Column<long>(type: "bigint", nullable: true),
                    long_prop_2 = table.Column<long>(type: "bigint", nullable: true),
                    str_prop_1 = table.Column<string>(type: "text", nullable: true),
                    str_prop_2 = table.Column<string>(type: "text", nullable: true),
                    str_prop_3 = table.Column<string>(type: "text", nullable: true),
                    time_zone_id = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_qrtz_simprop_triggers", x => new { x.sched_name, x.trigger_name, x.trigger_group });
                    table.ForeignKey(
                        name: "fk_qrtz_simprop_triggers_triggers",
                        columns: x => new { x.sched_name, x.trigger_name, x.trigger_group },
                        principalTable: "qrtz_triggers",
                        principalColumns: new[] { "sched_name", "trigger_name", "trigger_group" },
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_control_audit_at",
                table: "control_audit",
                column: "at");

            migrationBuilder.CreateIndex(
                name: "ix_inbox_states_received",
                table: "inbox_states",
                column: "received_at");

            migrationBuilder.CreateIndex(
                name: "IX_message_store_correlation_id",
                table: "message_store",
                column: "correlation_id");

            migrationBuilder.CreateIndex(
                name: "IX_message_store_message_id_exchange",
                table: "message_store",
                columns: new[] { "message_id", "exchange" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_message_store_message_type",
                table: "message_store",
                column: "message_type");

            migrationBuilder.CreateIndex(
                name: "IX_message_store_stored_at",
                table: "message_store",
                column: "stored_at");

            migrationBuilder.CreateIndex(
                name: "ix_outbox_messages_delivered",
                table: "outbox_messages",
                column: "delivered_at",
                filter: "delivered_at IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_outbox_messages_pending",
                table: "outbox_messages",
                column: "sequence",
                filter: "delivered_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "ix_outbox_messages_transaction",
                table: "outbox_messages",
                columns: new[] { "transaction_id", "sequence" },
                filter: "delivered_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_eh_fire_inst",
                table: "qrtz_execution_history",
                columns: new[] { "sched_name", "fire_instance_id" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_eh_fired_time",
                table: "qrtz_execution_history",
                columns: new[] { "sched_name", "fired_time" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_eh_inst",
                table: "qrtz_execution_history",
                columns: new[] { "sched_name", "instance_name" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_eh_job_time",
                table: "qrtz_execution_history",
                columns: new[] { "sched_name", "job_group", "job_name", "fired_time" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_eh_trig_time",
                table: "qrtz_execution_history",
                columns: new[] { "sched_name", "trigger_group", "trigger_name", "fired_time" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_ft_inst_job_req_rcvry",
                table: "qrtz_fired_triggers",
                columns: new[] { "sched_name", "instance_name", "requests_recovery" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_ft_j_g",
                table: "qrtz_fired_triggers",
                columns: new[] { "sched_name", "job_name", "job_group" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_ft_t_g",
                table: "qrtz_fired_triggers",
                columns: new[] { "sched_name", "trigger_name", "trigger_group" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_j_g_n",
                table: "qrtz_job_details",
                columns: new[] { "sched_name", "job_group", "job_name" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_mh_inst",
                table: "qrtz_misfire_history",
                columns: new[] { "sched_name", "instance_name" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_mh_misfire_time",
                table: "qrtz_misfire_history",
                columns: new[] { "sched_name", "misfire_time" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_t_c",
                table: "qrtz_triggers",
                columns: new[] { "sched_name", "calendar_name" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_t_g_n",
                table: "qrtz_triggers",
                columns: new[] { "sched_name", "trigger_group", "trigger_name" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_t_j",
                table: "qrtz_triggers",
                columns: new[] { "sched_name", "job_name", "job_group" });

            migrationBuilder.CreateIndex(
                name: "idx_qrtz_t_nft_st",
                table: "qrtz_triggers",
                columns: new[] { "sched_name", "trigger_state", "next_fire_time", "priority", "misfire_instr" },
                descending: new[] { false, false, false, true, false });

            migrationBuilder.CreateIndex(
                name: "IX_saga_timeline_saga_correlation_id_id",
                table: "saga_timeline",
                columns: new[] { "saga", "correlation_id", "id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "control_audit");

            migrationBuilder.DropTable(
                name: "inbox_states");

            migrationBuilder.DropTable(
                name: "invoice_state");

            migrationBuilder.DropTable(
                name: "invoices");

            migrationBuilder.DropTable(
                name: "message_store");

            migrationBuilder.DropTable(
                name: "outbox_messages");

            migrationBuilder.DropTable(
                name: "qrtz_blob_triggers");

            migrationBuilder.DropTable(
                name: "qrtz_calendars");

            migrationBuilder.DropTable(
                name: "qrtz_cron_triggers");

            migrationBuilder.DropTable(
                name: "qrtz_execution_history");

            migrationBuilder.DropTable(
                name: "qrtz_fired_triggers");

            migrationBuilder.DropTable(
                name: "qrtz_job_status");

            migrationBuilder.DropTable(
                name: "qrtz_locks");

            migrationBuilder.DropTable(
                name: "qrtz_misfire_history");

            migrationBuilder.DropTable(
                name: "qrtz_paused_job_grps");

            migrationBuilder.DropTable(
                name: "qrtz_paused_trigger_grps");

            migrationBuilder.DropTable(
                name: "qrtz_scheduler_state");

            migrationBuilder.DropTable(
                name: "qrtz_simple_triggers");

            migrationBuilder.DropTable(
                name: "qrtz_simprop_triggers");

            migrationBuilder.DropTable(
                name: "saga_timeline");

            migrationBuilder.DropTable(
                name: "qrtz_triggers");

            migrationBuilder.DropTable(
                name: "qrtz_job_details");
        }
    }
}
