using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Quartz;

namespace Integration.Testing;

/// <summary>A message the durable scheduler holds for later (a state-machine <c>Schedule</c>, a <c>ScheduleSend</c>, a recurring schedule).</summary>
public sealed class PendingTimeout
{
    internal PendingTimeout(TriggerKey key, ITrigger trigger)
    {
        Key = key.ToString();
        Trigger = key;
        var data = trigger.JobDataMap;
        MessageTypes = (data.GetString("MessageType") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries);
        Destination = Uri.TryCreate(data.GetString("Destination"), UriKind.Absolute, out var destination) ? destination : null;
        CorrelationId = Guid.TryParse(data.GetString("CorrelationId"), out var correlation) ? correlation : null;
        Body = data.GetString("Body");
        DueAt = trigger.NextFireTimeUtc;
        Recurring = trigger is not ISimpleTrigger { RepeatCount: 0 };
    }

    internal TriggerKey Trigger { get; }

    /// <summary>The scheduler's key for it (<c>group.name</c>).</summary>
    public string Key { get; }

    /// <summary>The message's type URNs, e.g. <c>urn:message:Billing:PaymentOverdue</c>.</summary>
    public IReadOnlyList<string> MessageTypes { get; }

    /// <summary>Where it will be sent.</summary>
    public Uri? Destination { get; }

    /// <summary>The correlation id of the message that scheduled it, when it had one.</summary>
    public Guid? CorrelationId { get; }

    /// <summary>The serialized message.</summary>
    public string? Body { get; }

    /// <summary>When it would fire by itself.</summary>
    public DateTimeOffset? DueAt { get; }

    /// <summary>True for a recurring schedule (it keeps its schedule after firing now).</summary>
    public bool Recurring { get; }

    /// <summary>True when the message is a <typeparamref name="TMessage"/>.</summary>
    public bool Is<TMessage>()
        where TMessage : class => MessageTypes.Contains(MessageUrn.ForTypeString<TMessage>());

    /// <inheritdoc />
    public override string ToString() =>
        $"{string.Join("|", MessageTypes.Select(t => t.Replace("urn:message:", "", StringComparison.Ordinal)))} to {Destination} due {DueAt:O}{(Recurring ? " (recurring)" : "")}";
}

/// <summary>
/// Time travel for the durable scheduler, without changing production code: the host's own Quartz scheduler (from its
/// container) is told to fire pending timeouts now. A one-shot timeout is rescheduled to now (so it fires once, as it would
/// have later); a recurring one fires once now and keeps its schedule.
/// </summary>
public sealed class DurableTimeouts
{
    readonly IServiceProvider _services;

    /// <summary>Time travel for the scheduler in <paramref name="services"/> (a host's container with <c>AddIntegrationScheduler</c>).</summary>
    public DurableTimeouts(IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        _services = services;
    }

    /// <summary>Every timeout the scheduler holds now.</summary>
    public async Task<IReadOnlyList<PendingTimeout>> PendingAsync(CancellationToken cancellationToken = default)
    {
        var scheduler = await Scheduler(cancellationToken).ConfigureAwait(false);
        var pending = new List<PendingTimeout>();
        foreach (var key in await scheduler.GetTriggerKeys(GroupMatcher<TriggerKey>.AnyGroup(), cancellationToken).ConfigureAwait(false))
        {
            if (await scheduler.GetTrigger(key, cancellationToken).ConfigureAwait(false) is { } trigger)
                pending.Add(new PendingTimeout(key, trigger));
        }

        return pending.OrderBy(p => p.DueAt).ToList();
    }

    /// <summary>
    /// Awaits at least one pending <typeparamref name="TMessage"/> (scheduling is asynchronous: the scheduler queue's consumer
    /// stores it), then fires every pending one now. Fails after <paramref name="timeout"/> (30 seconds by default) listing the
    /// timeouts it saw.
    /// </summary>
    public Task<IReadOnlyList<PendingTimeout>> FireNowAsync<TMessage>(Func<PendingTimeout, bool>? which = null, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
        where TMessage : class =>
        FireNowAsync(p => p.Is<TMessage>() && (which?.Invoke(p) ?? true), $"a pending {typeof(TMessage).Name} timeout", timeout, cancellationToken);

    /// <summary>Awaits at least one pending timeout <paramref name="which"/> accepts (any, when null), then fires every such one now.</summary>
    public Task<IReadOnlyList<PendingTimeout>> FireNowAsync(Func<PendingTimeout, bool>? which = null, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default) =>
        FireNowAsync(which ?? (_ => true), "a pending timeout", timeout, cancellationToken);

    async Task<IReadOnlyList<PendingTimeout>> FireNowAsync(Func<PendingTimeout, bool> which, string awaited, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        IReadOnlyList<PendingTimeout> seen = [];
        var matching = await Observe.UntilAsync(awaited, async token =>
        {
            seen = await PendingAsync(token).ConfigureAwait(false);
            return seen.Where(which).ToList();
        }, found => found.Count > 0, () => seen.Count == 0 ? "no pending timeouts" : string.Join("; ", seen), timeout, cancellationToken).ConfigureAwait(false);

        var scheduler = await Scheduler(cancellationToken).ConfigureAwait(false);
        var fired = new List<PendingTimeout>();
        foreach (var pending in matching)
        {
            if (await scheduler.GetTrigger(pending.Trigger, cancellationToken).ConfigureAwait(false) is not { } trigger)
                continue; // fired or cancelled meanwhile
            if (pending.Recurring)
            {
                await scheduler.TriggerJob(trigger.JobKey, trigger.JobDataMap, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                var now = trigger.GetTriggerBuilder().StartNow().Build();
                if (await scheduler.RescheduleJob(pending.Trigger, now, cancellationToken).ConfigureAwait(false) is null)
                    continue;
            }

            fired.Add(pending);
        }

        return fired;
    }

    async Task<IScheduler> Scheduler(CancellationToken cancellationToken)
    {
        var factory = _services.GetService<ISchedulerFactory>()
                      ?? throw new InvalidOperationException("The host has no durable scheduler: call bus.AddIntegrationScheduler() in its bus registration");
        return await factory.GetScheduler(cancellationToken).ConfigureAwait(false);
    }
}
