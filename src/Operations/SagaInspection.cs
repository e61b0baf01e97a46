using System.Linq.Expressions;
using System.Reflection;
using System.Text.Json;
using Integration.Outbox.Model;
using Integration.Sagas.Diagrams;
using Integration.Sagas.Scheduling;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Quartz;

namespace Integration.Operations;

/// <summary>Saga inspection settings, bound from <c>Integration:Operations:Sagas</c>.</summary>
public sealed class SagaInspectionOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Operations:Sagas";

    /// <summary>An instance in a state that is not terminal for longer than this (minutes) is flagged stuck. Default 60.</summary>
    public double StuckAfterMinutes { get; set; } = 60;

    /// <summary>Record each saga's timeline (one row per event, in the saga's transaction). Default true.</summary>
    public bool Timeline { get; set; } = true;

    /// <summary>
    /// An instance's timeline is deleted, whole, once its newest row is older than this (days): the history of an instance
    /// still receiving events is kept however old it is. Checked hourly, on the housekeeping leader when one is elected
    /// (job <c>saga-timeline-retention</c>). Default 30; 0 keeps every timeline.
    /// </summary>
    public double TimelineRetentionDays { get; set; } = 30;

    internal TimeSpan? TimelineRetention => TimelineRetentionDays > 0 ? TimeSpan.FromDays(TimelineRetentionDays) : null;

    internal TimeSpan StuckAfter => TimeSpan.FromMinutes(StuckAfterMinutes);

    internal static IEnumerable<string> Validate(SagaInspectionOptions options)
    {
        if (!double.IsFinite(options.StuckAfterMinutes) || options.StuckAfterMinutes <= 0 || options.StuckAfterMinutes > 525_600)
            yield return $"{Section}:StuckAfterMinutes must be more than 0 and at most 525600 (a year), not {options.StuckAfterMinutes}";
        if (!double.IsFinite(options.TimelineRetentionDays) || options.TimelineRetentionDays < 0 || options.TimelineRetentionDays > 36_500)
            yield return $"{Section}:TimelineRetentionDays must be 0 (keep every timeline) to 36500, not {options.TimelineRetentionDays}";
    }
}

/// <summary>
/// One event a saga instance received (table <c>saga_timeline</c>): the state before and after, and the messages it
/// sent and scheduled. Written in the saga's own transaction, so the timeline never tells of a step that rolled back.
/// </summary>
public sealed class SagaTimelineEntry
{
    /// <summary>Sequence (the timeline's order).</summary>
    public long Id { get; set; }

    /// <summary>The saga's name, as registered with <c>AddSaga</c>.</summary>
    public string Saga { get; set; } = "";

    /// <summary>The instance.</summary>
    public Guid CorrelationId { get; set; }

    /// <summary>When the event was handled.</summary>
    public DateTimeOffset At { get; set; }

    /// <summary>The event's name in the state machine (e.g. <c>Reserved</c>, <c>ApprovalTimeout.Received</c>), or the repair (<c>operator:saga.finalize</c>).</summary>
    public string Event { get; set; } = "";

    /// <summary>State before the event.</summary>
    public string? FromState { get; set; }

    /// <summary>State after the event.</summary>
    public string? ToState { get; set; }

    /// <summary>The message id of the event's message.</summary>
    public string? MessageId { get; set; }

    /// <summary>Messages the instance published, sent or scheduled while handling the event (JSON array).</summary>
    public string? Sent { get; set; }
}

/// <summary>A message a saga sent (or scheduled) while handling one event.</summary>
/// <param name="Type">Message type (short name).</param>
/// <param name="Destination">Queue address for a send; null for a publish.</param>
/// <param name="MessageId">Its message id.</param>
/// <param name="TokenId">For a scheduled message: the scheduling token (its Quartz trigger).</param>
/// <param name="ScheduledAt">For a scheduled message: when it is due.</param>
sealed record SagaSentMessage(string Type, string? Destination, Guid MessageId, Guid? TokenId = null, DateTimeOffset? ScheduledAt = null);

static class SagaTimelineModel
{
    /// <summary>Table of the saga timelines.</summary>
    public const string Table = "saga_timeline";

    public static void Map(ModelBuilder modelBuilder, string? schema) =>
        modelBuilder.Entity<SagaTimelineEntry>(e =>
        {
            e.ToTable(Table, schema);
            e.HasKey(x => x.Id);
            e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
            Text(e.Property(x => x.Saga), "saga", 100);
            e.Property(x => x.CorrelationId).HasColumnName("correlation_id");
            e.Property(x => x.At).HasColumnName("at");
            Text(e.Property(x => x.Event), "event", 200);
            Text(e.Property(x => x.FromState), "from_state", 100);
            Text(e.Property(x => x.ToState), "to_state", 100);
            Text(e.Property(x => x.MessageId), "message_id", 100);
            e.Property(x => x.Sent).HasColumnName("sent").HasColumnType("jsonb");
            e.HasIndex(x => new { x.Saga, x.CorrelationId, x.Id });
        });

    static void Text(PropertyBuilder property, string column, int length) => property.HasColumnName(column).HasMaxLength(length);
}

/// <summary>A saga's definition from its state machine: states, events, transitions; terminal states have no way out.</summary>
sealed record SagaDefinition(string Initial, string Final, IReadOnlyList<string> States, IReadOnlyList<string> Events,
    IReadOnlyList<(string From, string To, string Event)> Transitions, IReadOnlySet<string> Terminal);

/// <summary>One registered saga: counts (the gauge), lists, reads and repairs its instances.</summary>
abstract class SagaInspector(string saga) : SagaGauge(saga)
{
    public abstract Type SagaType { get; }

    /// <summary>Instances (at most <paramref name="cap"/>), in <paramref name="state"/> when given, as (id, state).</summary>
    public abstract Task<IReadOnlyList<(Guid Id, string State)>> ListAsync(DbContext db, string? state, int cap, CancellationToken cancellationToken);

    /// <summary>The instance (tracked when <paramref name="track"/>), or null.</summary>
    public abstract Task<object?> FindAsync(DbContext db, Guid id, bool track, CancellationToken cancellationToken);

    public abstract string StateOf(object instance);

    /// <summary>Sets the instance's state (the property the state expression names).</summary>
    public abstract void SetState(object instance, string state);

    /// <summary>The state machine's definition, when the machine is registered in <paramref name="services"/>.</summary>
    public abstract SagaDefinition? Describe(IServiceProvider services);

    /// <summary>The scheduling tokens the instance holds now, one per schedule of its machine that has one (message type, token).</summary>
    public abstract IReadOnlyList<(string Type, Guid Token)> Tokens(object instance, IServiceProvider services);
}

sealed class SagaInspector<TSaga> : SagaInspector
    where TSaga : class, SagaStateMachineInstance
{
    readonly SagaGauge<TSaga> _gauge;
    readonly Expression<Func<TSaga, string>> _state;
    readonly Func<TSaga, string> _read;
    readonly PropertyInfo? _property;
    SagaDefinition? _definition;

    public SagaInspector(string saga, Expression<Func<TSaga, string>> state)
        : base(saga)
    {
        _gauge = new SagaGauge<TSaga>(saga, state);
        _state = state;
        _read = state.Compile();
        _property = (state.Body as MemberExpression)?.Member as PropertyInfo;
    }

    public override Type SagaType => typeof(TSaga);

    public Func<TSaga, string> Read => _read;

    public override Task<IReadOnlyList<SagaStateCount>> CountAsync(DbContext db, CancellationToken cancellationToken) => _gauge.CountAsync(db, cancellationToken);

    public override async Task<IReadOnlyList<(Guid Id, string State)>> ListAsync(DbContext db, string? state, int cap, CancellationToken cancellationToken)
    {
        var query = db.Set<TSaga>().AsNoTracking();
        if (state is not null)
        {
            var holder = new StateHolder { Value = state };
            var equals = Expression.Lambda<Func<TSaga, bool>>(
                Expression.Equal(_state.Body, Expression.Property(Expression.Constant(holder), nameof(StateHolder.Value))), _state.Parameters);
            query = query.Where(equals);
        }

        var rows = await query.OrderBy(s => s.CorrelationId).Take(cap).ToListAsync(cancellationToken).ConfigureAwait(false);
        return rows.Select(s => (s.CorrelationId, _read(s))).ToList();
    }

    sealed class StateHolder
    {
        public string Value { get; init; } = "";
    }

    public override async Task<object?> FindAsync(DbContext db, Guid id, bool track, CancellationToken cancellationToken)
    {
        var set = track ? db.Set<TSaga>() : db.Set<TSaga>().AsNoTracking();
        return await set.SingleOrDefaultAsync(s => s.CorrelationId == id, cancellationToken).ConfigureAwait(false);
    }

    public override string StateOf(object instance) => _read((TSaga)instance);

    public override void SetState(object instance, string state)
    {
        if (_property is not { CanWrite: true })
            throw new InvalidOperationException($"Saga '{Saga}': its state expression does not name a settable property, so it cannot be finalized from the control bus");
        _property.SetValue(instance, state);
    }

    public override SagaDefinition? Describe(IServiceProvider services)
    {
        if (_definition is not null)
            return _definition;
        if (services.GetService<SagaStateMachine<TSaga>>() is not { } machine)
            return null;
        var transitions = StateMachineDiagram.Transitions(machine);
        var states = machine.States.Select(s => s.Name).ToList();
        var events = machine.Events.Select(e => e.Name).Where(n => !IsStateEvent(n)).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var terminal = states.Where(s => s != machine.Initial.Name && transitions.All(t => t.From != s || t.To == s)).ToHashSet(StringComparer.Ordinal);
        terminal.Add(machine.Final.Name);
        return _definition = new SagaDefinition(machine.Initial.Name, machine.Final.Name, states, events, transitions, terminal);
    }

    List<(string Type, Schedule<TSaga> Schedule)>? _schedules;

    public override IReadOnlyList<(string Type, Guid Token)> Tokens(object instance, IServiceProvider services)
    {
        if (_schedules is null)
        {
            if (services.GetService<SagaStateMachine<TSaga>>() is not { } machine)
                return [];
            _schedules = machine.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .Where(p => typeof(Schedule<TSaga>).IsAssignableFrom(p.PropertyType) && p.GetIndexParameters().Length == 0)
                .Select(p => (Type: p.PropertyType.IsGenericType ? p.PropertyType.GetGenericArguments()[^1].Name : p.Name, Schedule: p.GetValue(machine) as Schedule<TSaga>))
                .Where(s => s.Schedule is not null).Select(s => (s.Type, s.Schedule!)).ToList();
        }

        return _schedules.Select(s => (s.Type, Token: s.Schedule.GetTokenId((TSaga)instance))).Where(s => s.Token is not null).Select(s => (s.Type, s.Token!.Value)).ToList();
    }

    /// <summary>A state's own enter/leave events (<c>Reserving.Enter</c>) describe the state, not something the saga received.</summary>
    internal static bool IsStateEvent(string name) =>
        name.EndsWith(".Enter", StringComparison.Ordinal) || name.EndsWith(".Leave", StringComparison.Ordinal)
        || name.EndsWith(".BeforeEnter", StringComparison.Ordinal) || name.EndsWith(".AfterLeave", StringComparison.Ordinal);
}

/// <summary>
/// Writes a saga's timeline as it happens: a MassTransit event observer on the state machine that, for every event the
/// machine handles, adds a <see cref="SagaTimelineEntry"/> (state before and after, the outbox rows the event produced)
/// to the scope's DbContext, which the PostgreSQL saga repository saves in the saga's transaction.
/// </summary>
sealed class SagaTimelineObserver<TSaga>(SagaInspector<TSaga> inspector, OperationsDatabase database, IOptionsMonitor<SagaInspectionOptions> options,
    GraphCounters counters, TimeProvider time) : IEventObserver<TSaga>
    where TSaga : class, SagaStateMachineInstance
{
    /// <summary>The event being handled, per consume context.</summary>
    sealed class Draft
    {
        public string? Event;
        public string From = "";
        public DbContext? Db;
        public HashSet<object> Outbox = new(ReferenceEqualityComparer.Instance);
    }

    public Task PreExecute(BehaviorContext<TSaga> context)
    {
        Begin(context);
        return Task.CompletedTask;
    }

    public Task PreExecute<T>(BehaviorContext<TSaga, T> context)
        where T : class
    {
        Begin(context);
        return Task.CompletedTask;
    }

    public Task PostExecute(BehaviorContext<TSaga> context) => EndAsync(context);

    public Task PostExecute<T>(BehaviorContext<TSaga, T> context)
        where T : class => EndAsync(context);

    public Task ExecuteFault(BehaviorContext<TSaga> context, Exception exception) => Fault(context);

    public Task ExecuteFault<T>(BehaviorContext<TSaga, T> context, Exception exception)
        where T : class => Fault(context);

    Task Fault(BehaviorContext<TSaga> context)
    {
        if (!SagaInspector<TSaga>.IsStateEvent(context.Event.Name))
            counters.Add(GraphCounters.SagaFault(inspector.Saga, State(context.Saga)));
        return Task.CompletedTask;
    }

    string State(TSaga saga) => inspector.Read(saga) is { Length: > 0 } state ? state : "Initial";

    void Begin(BehaviorContext<TSaga> context)
    {
        if (!options.CurrentValue.Timeline || SagaInspector<TSaga>.IsStateEvent(context.Event.Name))
            return;
        var draft = context.GetOrAddPayload(() => new Draft());
        draft.Event = context.Event.Name;
        draft.From = State(context.Saga);
        draft.Outbox.Clear();
        draft.Db = context.TryGetPayload<IServiceProvider>(out var services) ? database.Open(services) : null;
        if (draft.Db is { } db && db.Model.FindEntityType(typeof(OutboxMessage)) is not null)
        {
            foreach (var row in db.ChangeTracker.Entries<OutboxMessage>())
                draft.Outbox.Add(row.Entity);
        }
    }

    async Task EndAsync(BehaviorContext<TSaga> context)
    {
        if (!options.CurrentValue.Timeline || SagaInspector<TSaga>.IsStateEvent(context.Event.Name)
            || !context.TryGetPayload<Draft>(out var draft) || draft.Event != context.Event.Name || draft.Db is not { } db)
            return;
        draft.Event = null;
        var to = State(context.Saga);
        var sent = db.Model.FindEntityType(typeof(OutboxMessage)) is null
            ? []
            : db.ChangeTracker.Entries<OutboxMessage>().Select(e => e.Entity).Where(m => !draft.Outbox.Contains(m)).OrderBy(m => m.Sequence)
                .Select(Describe).ToList();
        db.Set<SagaTimelineEntry>().Add(new SagaTimelineEntry
        {
            Saga = inspector.Saga,
            CorrelationId = context.Saga.CorrelationId,
            At = time.GetUtcNow(),
            Event = Truncate(context.Event.Name, 200),
            FromState = Truncate(draft.From, 100),
            ToState = Truncate(to, 100),
            MessageId = context.MessageId?.ToString("D"),
            Sent = sent.Count == 0 ? null : JsonSerializer.Serialize(sent, SagaInspection.Json),
        });
        counters.Add(GraphCounters.SagaTransition(inspector.Saga, draft.From, to, context.Event.Name));
        // The saga repository saves the row with the saga, in its transaction. A saga kept in another DbContext than the
        // operations one leaves this one without a transaction: the row is saved on its own (not atomically).
        if (db.Database.CurrentTransaction is null)
            await db.SaveChangesAsync(context.CancellationToken).ConfigureAwait(false);
    }

    static string Truncate(string value, int length) => value.Length > length ? value[..length] : value;

    /// <summary>An outbox row as a sent message; MassTransit's <c>ScheduleMessage</c> (to the durable scheduler) as the message it schedules.</summary>
    static SagaSentMessage Describe(OutboxMessage row)
    {
        var type = ShortType(row.MessageType);
        if (type.StartsWith("ScheduleMessage", StringComparison.Ordinal) && row.Body.Length > 0)
        {
            try
            {
                using var body = JsonDocument.Parse(row.Body);
                var root = body.RootElement.TryGetProperty("message", out var message) ? message : body.RootElement;
                Guid? token = Property(root, "correlationId") is { ValueKind: JsonValueKind.String } c && Guid.TryParse(c.GetString(), out var t) ? t : row.CorrelationId;
                DateTimeOffset? at = Property(root, "scheduledTime") is { ValueKind: JsonValueKind.String } s && DateTimeOffset.TryParse(s.GetString(),
                    System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var when) ? when : null;
                var payload = Property(root, "payloadType") is { ValueKind: JsonValueKind.Array } types && types.GetArrayLength() > 0
                    ? ShortType(types[0].GetString() ?? type) : type;
                return new SagaSentMessage(payload, row.Destination, row.MessageId, token, at);
            }
            catch (JsonException)
            {
            }
        }

        return new SagaSentMessage(type, row.Destination, row.MessageId);
    }

    static JsonElement? Property(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object)
            return null;
        foreach (var property in element.EnumerateObject())
        {
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase))
                return property.Value;
        }

        return null;
    }

    /// <summary><c>Ns.Type, Assembly</c>, <c>urn:message:Ns:Type</c> or <c>Ns.Type`1[[...]]</c> → <c>Type</c>.</summary>
    internal static string ShortType(string type)
    {
        var name = type.Split(',')[0].Split('[')[0].Split('`')[0];
        var cut = Math.Max(name.LastIndexOf('.'), name.LastIndexOf(':'));
        return cut >= 0 ? name[(cut + 1)..] : name;
    }
}

/// <summary>Lists, reads and repairs saga instances for the control bus.</summary>
sealed class SagaInspection(IEnumerable<SagaInspector> sagas, IServiceScopeFactory scopes, OperationsDatabase database, IServiceProvider services,
    IOptionsMonitor<SagaInspectionOptions> options, TimeProvider time)
{
    /// <summary>At most this many instances of one saga are read for a list (the oldest in their state come first).</summary>
    public const int ListCap = 2000;

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    readonly Dictionary<string, SagaInspector> _sagas = sagas.ToDictionary(s => s.Saga, StringComparer.Ordinal);

    public IReadOnlyCollection<SagaInspector> Sagas => _sagas.Values;

    public SagaInspector? Find(string saga) => _sagas.GetValueOrDefault(saga);

    public string Known => _sagas.Count == 0 ? "none is registered (operations.AddSaga<TSaga>(name, state))" : string.Join(", ", _sagas.Keys.Order(StringComparer.Ordinal));

    /// <summary>Instances by saga, state and age; oldest in their state first.</summary>
    public async Task<IReadOnlyList<object>> ListAsync(ListSagaInstances query, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        var now = time.GetUtcNow();
        var result = new List<(DateTimeOffset? Since, object Row)>();
        foreach (var saga in query.Target is null ? _sagas.Values.ToList() : [_sagas[query.Target]])
        {
            var definition = saga.Describe(services);
            var instances = await saga.ListAsync(db, query.State, ListCap, cancellationToken).ConfigureAwait(false);
            var ages = await AgesAsync(db, saga.Saga, instances.Select(i => i.Id).ToList(), cancellationToken).ConfigureAwait(false);
            foreach (var (id, state) in instances)
            {
                var age = ages.GetValueOrDefault(id);
                var stuck = IsStuck(definition, state, age.Since, now);
                if (query.Stuck && !stuck)
                    continue;
                if (query.OlderThanMinutes is { } minutes && (age.Since is not { } since || now - since < TimeSpan.FromMinutes(minutes)))
                    continue;
                result.Add((age.Since, new
                {
                    saga = saga.Saga,
                    correlationId = id,
                    state,
                    since = age.Since,
                    ageSeconds = age.Since is { } s ? Math.Round((now - s).TotalSeconds, 1) : (double?)null,
                    stuck,
                    events = age.Events,
                }));
            }
        }

        return result.OrderBy(r => r.Since ?? DateTimeOffset.MaxValue).Take(Math.Clamp(query.Take, 1, 1000)).Select(r => r.Row).ToList();
    }

    /// <summary>When each instance entered its state (its last transition to another state, else its first event) and how many events it had.</summary>
    static async Task<Dictionary<Guid, (DateTimeOffset? Since, int Events)>> AgesAsync(DbContext db, string saga, List<Guid> ids, CancellationToken cancellationToken)
    {
        if (ids.Count == 0)
            return [];
        var rows = await db.Set<SagaTimelineEntry>().AsNoTracking().Where(t => t.Saga == saga && ids.Contains(t.CorrelationId))
            .GroupBy(t => t.CorrelationId)
            .Select(g => new
            {
                Id = g.Key,
                Moved = g.Where(t => t.FromState != t.ToState).Max(t => (DateTimeOffset?)t.At),
                First = g.Min(t => t.At),
                Events = g.Count(),
            })
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        return rows.ToDictionary(r => r.Id, r => (r.Moved ?? (DateTimeOffset?)r.First, r.Events));
    }

    bool IsStuck(SagaDefinition? definition, string state, DateTimeOffset? since, DateTimeOffset now) =>
        since is { } at && now - at > options.CurrentValue.StuckAfter && !(definition?.Terminal.Contains(state) ?? state == "Final");

    /// <summary>One instance with its timeline (oldest first) and its pending timeouts; null when there is none.</summary>
    public async Task<object?> ShowAsync(SagaInspector saga, Guid id, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        if (await saga.FindAsync(db, id, track: false, cancellationToken).ConfigureAwait(false) is not { } instance)
            return null;
        var timeline = await TimelineAsync(db, saga.Saga, id, cancellationToken).ConfigureAwait(false);
        var pending = await PendingAsync(saga, instance, timeline, cancellationToken).ConfigureAwait(false);
        var state = saga.StateOf(instance);
        var definition = saga.Describe(services);
        var now = time.GetUtcNow();
        var since = timeline.LastOrDefault(t => t.FromState != t.ToState)?.At ?? timeline.FirstOrDefault()?.At;
        JsonElement? data;
        try
        {
            data = JsonSerializer.SerializeToElement(instance, saga.SagaType, Json);
        }
        catch (Exception exception) when (exception is NotSupportedException or JsonException or InvalidOperationException)
        {
            data = null;
        }

        return new
        {
            saga = saga.Saga,
            correlationId = id,
            state,
            since,
            ageSeconds = since is { } s ? Math.Round((now - s).TotalSeconds, 1) : (double?)null,
            stuck = IsStuck(definition, state, since, now),
            terminal = definition?.Terminal.Contains(state) ?? state == "Final",
            instance = data,
            timeline = timeline.Select(t => new
            {
                id = t.Id,
                at = t.At,
                @event = t.Event,
                from = t.FromState,
                to = t.ToState,
                messageId = t.MessageId,
                sent = Sent(t),
            }).ToList(),
            pendingTimeouts = pending.Select(p => new { tokenId = p.TokenId, messageType = p.Type, dueAt = p.DueAt }).ToList(),
        };
    }

    static IReadOnlyList<SagaSentMessage> Sent(SagaTimelineEntry entry) =>
        entry.Sent is null ? [] : JsonSerializer.Deserialize<List<SagaSentMessage>>(entry.Sent, Json) ?? [];

    static async Task<List<SagaTimelineEntry>> TimelineAsync(DbContext db, string saga, Guid id, CancellationToken cancellationToken) =>
        await db.Set<SagaTimelineEntry>().AsNoTracking().Where(t => t.Saga == saga && t.CorrelationId == id).OrderBy(t => t.Id).Take(1000)
            .ToListAsync(cancellationToken).ConfigureAwait(false);

    sealed record Pending(Guid TokenId, string Type, DateTimeOffset? DueAt, ITrigger Trigger);

    /// <summary>Timeouts the instance scheduled whose trigger is still in the durable scheduler.</summary>
    async Task<List<Pending>> PendingAsync(SagaInspector saga, object instance, IEnumerable<SagaTimelineEntry> timeline, CancellationToken cancellationToken)
    {
        // The tokens the instance holds (its machine's schedules), and any the timeline saw it schedule.
        var scheduled = saga.Tokens(instance, services).Select(t => new SagaSentMessage(t.Type, null, Guid.Empty, t.Token))
            .Concat(timeline.SelectMany(Sent).Where(m => m.TokenId is not null))
            .GroupBy(m => m.TokenId!.Value).Select(g => g.First()).ToList();
        if (scheduled.Count == 0 || await SchedulerAsync(cancellationToken).ConfigureAwait(false) is not { } scheduler)
            return [];
        var pending = new List<Pending>();
        foreach (var message in scheduled)
        {
            if (await scheduler.GetTrigger(ScheduledMessages.TriggerOf(message.TokenId!.Value), cancellationToken).ConfigureAwait(false) is { } trigger)
                pending.Add(new Pending(message.TokenId.Value, message.Type, trigger.NextFireTimeUtc ?? message.ScheduledAt, trigger));
        }

        return pending;
    }

    async Task<IScheduler?> SchedulerAsync(CancellationToken cancellationToken) =>
        services.GetService<ISchedulerFactory>() is { } factory ? await factory.GetScheduler(cancellationToken).ConfigureAwait(false) : null;

    /// <summary>Fires a pending timeout now (its trigger is rescheduled to fire at once, with the same message and token).</summary>
    public Task<ControlResult> FireAsync(SagaInspector saga, Guid id, Guid? token, CancellationToken cancellationToken) =>
        RepairTimeoutAsync(saga, id, token, "saga.timeout.fire", async (scheduler, pending) =>
        {
            var now = Quartz.TriggerBuilder.Create().ForJob(pending.Trigger.JobKey).WithIdentity(pending.Trigger.Key).UsingJobData(pending.Trigger.JobDataMap)
                .StartNow().WithSchedule(SimpleScheduleBuilder.Create().WithMisfireInstruction(SimpleTriggerMisfireInstruction.FireNow)).Build();
            await scheduler.RescheduleJob(pending.Trigger.Key, now, cancellationToken).ConfigureAwait(false);
            return $"fired {pending.Type} ({pending.TokenId:D}) now";
        }, cancellationToken);

    /// <summary>Cancels a pending timeout (its trigger is removed).</summary>
    public Task<ControlResult> CancelAsync(SagaInspector saga, Guid id, Guid? token, CancellationToken cancellationToken) =>
        RepairTimeoutAsync(saga, id, token, "saga.timeout.cancel", async (scheduler, pending) =>
        {
            await scheduler.UnscheduleJob(pending.Trigger.Key, cancellationToken).ConfigureAwait(false);
            return $"cancelled {pending.Type} ({pending.TokenId:D})";
        }, cancellationToken);

    async Task<ControlResult> RepairTimeoutAsync(SagaInspector saga, Guid id, Guid? token, string action, Func<IScheduler, Pending, Task<string>> repair,
        CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        if (await saga.FindAsync(db, id, track: false, cancellationToken).ConfigureAwait(false) is not { } instance)
            return ControlResult.NotFound($"Saga '{saga.Saga}' has no instance {id:D}");
        if (await SchedulerAsync(cancellationToken).ConfigureAwait(false) is not { } scheduler)
            return ControlResult.NotFound("This host has no durable scheduler (AddIntegrationScheduler): there are no timeouts to repair");
        var pending = await PendingAsync(saga, instance, await TimelineAsync(db, saga.Saga, id, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        var chosen = token is { } t ? pending.Where(p => p.TokenId == t).ToList() : pending;
        if (chosen.Count == 0)
            return ControlResult.NotFound(token is null ? $"Saga '{saga.Saga}' {id:D} has no pending timeout" : $"Saga '{saga.Saga}' {id:D} has no pending timeout {token:D}");
        if (chosen.Count > 1)
            return ControlResult.Invalid($"Saga '{saga.Saga}' {id:D} has {chosen.Count} pending timeouts: name one with 'tokenId' ({string.Join(", ", chosen.Select(p => p.TokenId))})");
        var done = await repair(scheduler, chosen[0]).ConfigureAwait(false);
        var state = saga.StateOf(instance);
        db.Set<SagaTimelineEntry>().Add(new SagaTimelineEntry
        {
            Saga = saga.Saga, CorrelationId = id, At = time.GetUtcNow(), Event = "operator:" + action, FromState = state, ToState = state,
        });
        await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        return ControlResult.Ok($"Saga '{saga.Saga}' {id:D}: {done}", new { saga = saga.Saga, correlationId = id, tokenId = chosen[0].TokenId });
    }

    /// <summary>Moves the instance to the machine's final state and cancels its pending timeouts, with a timeline row, in one transaction.</summary>
    public async Task<ControlResult> FinalizeAsync(SagaInspector saga, Guid id, string? reason, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = database.Open(scope.ServiceProvider);
        if (await saga.FindAsync(db, id, track: true, cancellationToken).ConfigureAwait(false) is not { } instance)
            return ControlResult.NotFound($"Saga '{saga.Saga}' has no instance {id:D}");
        var final = saga.Describe(services)?.Final ?? "Final";
        var from = saga.StateOf(instance);
        if (from == final)
            return ControlResult.Invalid($"Saga '{saga.Saga}' {id:D} is already {final}");
        var pending = await PendingAsync(saga, instance, await TimelineAsync(db, saga.Saga, id, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        saga.SetState(instance, final);
        var @event = "operator:saga.finalize" + (string.IsNullOrWhiteSpace(reason) ? "" : $" ({reason})");
        db.Set<SagaTimelineEntry>().Add(new SagaTimelineEntry
        {
            Saga = saga.Saga, CorrelationId = id, At = time.GetUtcNow(), Event = @event.Length > 200 ? @event[..200] : @event, FromState = from, ToState = final,
        });
        try
        {
            await db.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateConcurrencyException)
        {
            return new ControlResult(ControlOutcome.Failed, $"Saga '{saga.Saga}' {id:D} changed while it was being finalized; nothing was changed, try again");
        }

        if (pending.Count > 0 && await SchedulerAsync(cancellationToken).ConfigureAwait(false) is { } scheduler)
        {
            foreach (var timeout in pending)
                await scheduler.UnscheduleJob(timeout.Trigger.Key, cancellationToken).ConfigureAwait(false);
        }

        return ControlResult.Ok($"Saga '{saga.Saga}' {id:D}: {from} → {final}" + (pending.Count > 0 ? $", {pending.Count} pending timeout(s) cancelled" : ""),
            new { saga = saga.Saga, correlationId = id, from, to = final, cancelledTimeouts = pending.Select(p => p.TokenId).ToList() });
    }
}
