using System.Collections;
using MassTransit;
using Microsoft.Extensions.Logging;
using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// Registered by <c>AddIntegrationScheduler</c> through MassTransit's <c>AddBusObserver</c>. When the bus is created it
/// checks the endpoints (the scheduler's queue exists; an endpoint that schedules has the message scheduler) and fails
/// the bus naming the call that is missing. Starts Quartz after the bus started and shuts it down when the bus stops.
/// The scheduler is kept from the start: at stop the container may already be disposing, so it is not asked again, and a
/// failure to stop is logged, never thrown.
/// </summary>
sealed partial class SchedulerBusObserver(ISchedulerFactory schedulerFactory, DurableSchedulerOptions options, ILogger logger) : IBusObserver
{
    IScheduler? _scheduler;

    public void PostCreate(IBus bus)
    {
        ArgumentNullException.ThrowIfNull(bus);
        var endpoints = SchedulerEndpointCheck.Endpoints(bus.GetProbeResult().Results).ToList();
        if (!endpoints.Any(e => e.Name == options.QueueName))
        {
            throw new InvalidOperationException($"The durable scheduler's queue '{options.QueueName}' has no receive endpoint: call " +
                "cfg.ConfigureEndpoints(context) in the bus configuration (AddIntegrationScheduler registers its consumers there)");
        }

        var missing = endpoints.Where(e => e.Schedules && !e.HasScheduler).Select(e => e.Name).ToList();
        if (missing.Count > 0)
        {
            throw new InvalidOperationException($"Receive endpoint(s) {string.Join(", ", missing.Select(m => $"'{m}'"))} schedule messages but have no message " +
                "scheduler: call e.UseIntegrationScheduler(context) in their cfg.ReceiveEndpoint(...) (endpoints created by ConfigureEndpoints have it)");
        }
    }

    public void CreateFaulted(Exception exception)
    {
    }

    public Task PreStart(IBus bus) => Task.CompletedTask;

    public async Task PostStart(IBus bus, Task<BusReady> busReady)
    {
        var scheduler = await schedulerFactory.GetScheduler().ConfigureAwait(false);
        await scheduler.Start().ConfigureAwait(false);
        _scheduler = scheduler;
        LogStarted(logger, scheduler.SchedulerName, await scheduler.GetSchedulerInstanceId().ConfigureAwait(false), options.QueueName!);
    }

    public Task StartFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    public async Task PreStop(IBus bus)
    {
        if (_scheduler is not { } scheduler)
            return;
        try
        {
            await scheduler.Standby().ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is ObjectDisposedException or SchedulerException or InvalidOperationException)
        {
            LogStopFailed(logger, exception);
        }
    }

    public async Task PostStop(IBus bus)
    {
        if (Interlocked.Exchange(ref _scheduler, null) is not { } scheduler)
            return;
        try
        {
            await scheduler.Shutdown(waitForJobsToComplete: true).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is ObjectDisposedException or SchedulerException or InvalidOperationException)
        {
            LogStopFailed(logger, exception);
        }
    }

    public Task StopFaulted(IBus bus, Exception exception) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Durable scheduler {SchedulerName} started (instance {InstanceId}, queue {Queue})")]
    static partial void LogStarted(ILogger logger, string schedulerName, string instanceId, string queue);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Durable scheduler did not stop cleanly; its triggers stay in the database")]
    static partial void LogStopFailed(ILogger logger, Exception exception);
}

/// <summary>Reads the receive endpoints from the bus's probe: their queue, whether they schedule, whether they have a message scheduler.</summary>
static class SchedulerEndpointCheck
{
    internal sealed record Endpoint(string Name, bool Schedules, bool HasScheduler);

    public static IEnumerable<Endpoint> Endpoints(IDictionary<string, object> probe)
    {
        foreach (var scope in Scopes(probe, "receiveEndpoint"))
        {
            var name = scope.TryGetValue("name", out var value) && value is string text ? text : "?";
            var filters = Strings(scope, "filterType").ToHashSet(StringComparer.Ordinal);
            // A state machine's Schedule/Unschedule activities, or UseScheduledRedelivery's filter, need the message scheduler.
            var schedules = Keys(scope).Any(k => k is "schedule" or "unschedule") || filters.Contains("scheduleRedeliveryContext");
            yield return new Endpoint(name, schedules, filters.Contains("scheduler"));
        }
    }

    static IEnumerable<IDictionary<string, object>> Scopes(object node, string key)
    {
        switch (node)
        {
            case IDictionary<string, object> dictionary:
                foreach (var (k, value) in dictionary)
                {
                    if (k == key)
                    {
                        foreach (var found in Children(value))
                            yield return found;
                    }
                    else
                    {
                        foreach (var found in Scopes(value, key))
                            yield return found;
                    }
                }

                break;
            case IEnumerable list and not string:
                foreach (var item in list)
                {
                    foreach (var found in Scopes(item!, key))
                        yield return found;
                }

                break;
        }
    }

    static IEnumerable<IDictionary<string, object>> Children(object value) => value switch
    {
        IDictionary<string, object> one => [one],
        IEnumerable list and not string => list.OfType<IDictionary<string, object>>(),
        _ => [],
    };

    static IEnumerable<string> Keys(object node) => node switch
    {
        IDictionary<string, object> dictionary => dictionary.Keys.Concat(dictionary.Values.SelectMany(Keys)),
        IEnumerable list and not string => list.Cast<object>().SelectMany(Keys),
        _ => [],
    };

    static IEnumerable<string> Strings(object node, string key) => node switch
    {
        IDictionary<string, object> dictionary => (dictionary.TryGetValue(key, out var value) && value is string text ? [text] : Array.Empty<string>())
            .Concat(dictionary.Values.SelectMany(v => Strings(v, key))),
        IEnumerable list and not string => list.Cast<object>().SelectMany(v => Strings(v, key)),
        _ => [],
    };
}
