using System.Text.Json;
using MassTransit;
using MassTransit.Context;
using MassTransit.Scheduling;
using Microsoft.Extensions.Logging;
using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>
/// Stores MassTransit's <see cref="ScheduleMessage"/> and <see cref="ScheduleRecurringMessage"/> commands as Quartz
/// triggers in PostgreSQL; <see cref="ScheduledMessageJob"/> delivers them when they fire. The trigger is named after the
/// schedule's token id, so scheduling the same token again replaces it and a cancel finds it.
/// </summary>
sealed partial class ScheduleMessageConsumer(ISchedulerFactory schedulerFactory, SagasMetrics metrics, ILogger<ScheduleMessageConsumer> logger) :
    IConsumer<ScheduleMessage>,
    IConsumer<ScheduleRecurringMessage>
{
    public async Task Consume(ConsumeContext<ScheduleMessage> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var message = context.Message;
        var scheduler = await schedulerFactory.GetScheduler(context.CancellationToken).ConfigureAwait(false);
        var job = await EnsureJob(scheduler, context.CancellationToken).ConfigureAwait(false);

        var fireAt = new DateTimeOffset(DateTime.SpecifyKind(message.ScheduledTime, DateTimeKind.Utc));
        var builder = TriggerBuilder.Create()
            .ForJob(job)
            .WithIdentity(QuartzKeys.Trigger(message.CorrelationId))
            .StartAt(fireAt)
            .WithSchedule(SimpleScheduleBuilder.Create().WithMisfireInstruction(SimpleTriggerMisfireInstruction.FireNow))
            .UsingJobData(JobData(context, message.Payload, message.PayloadType, message.Destination, message.CorrelationId, context.MessageId));

        await scheduler.ScheduleJob(builder.Build(), ScheduleJobOptions.Replacing, context.CancellationToken).ConfigureAwait(false);
        metrics.Scheduled.Add(1);
        LogScheduled(logger, message.CorrelationId, message.Destination, fireAt);
    }

    public async Task Consume(ConsumeContext<ScheduleRecurringMessage> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var message = context.Message;
        var schedule = message.Schedule;
        var scheduler = await schedulerFactory.GetScheduler(context.CancellationToken).ConfigureAwait(false);
        var job = await EnsureJob(scheduler, context.CancellationToken).ConfigureAwait(false);

        var timeZone = string.IsNullOrWhiteSpace(schedule.TimeZoneId) ? TimeZoneInfo.Utc : TimeZoneInfo.FindSystemTimeZoneById(schedule.TimeZoneId);
        var cron = CronScheduleBuilder.Create(schedule.CronExpression).InTimeZone(timeZone);
        cron = schedule.MisfirePolicy switch
        {
            MissedEventPolicy.Skip => cron.WithMisfireInstruction(CronTriggerMisfireInstruction.DoNothing),
            MissedEventPolicy.Send => cron.WithMisfireInstruction(CronTriggerMisfireInstruction.FireAndProceed),
            _ => cron,
        };
        var builder = TriggerBuilder.Create()
            .ForJob(job)
            .WithIdentity(QuartzKeys.Recurring(schedule.ScheduleId, schedule.ScheduleGroup))
            .WithDescription(schedule.Description)
            .StartAt(schedule.StartTime)
            .EndAt(schedule.EndTime)
            .WithSchedule(cron)
            .UsingJobData(JobData(context, message.Payload, message.PayloadType, message.Destination, message.CorrelationId, messageId: null));

        await scheduler.ScheduleJob(builder.Build(), ScheduleJobOptions.Replacing, context.CancellationToken).ConfigureAwait(false);
        metrics.Scheduled.Add(1);
        LogRecurring(logger, schedule.ScheduleId, schedule.ScheduleGroup, schedule.CronExpression, message.Destination);
    }

    static JobDataMap JobData(ConsumeContext context, object payload, string[] payloadTypes, Uri destination, Guid tokenId, Guid? messageId)
    {
        // Serialize the payload as a message of its own types, in the serializer it arrived with.
        var serializer = context.SerializerContext.GetMessageSerializer(payload, payloadTypes);
        var body = serializer.GetMessageBody(new MessageSendContext<object>(payload, context.CancellationToken));

        var data = new Dictionary<string, string?>
        {
            [ScheduledMessageData.Destination] = destination.ToString(),
            [ScheduledMessageData.Body] = body.GetString(),
            [ScheduledMessageData.ContentType] = serializer.ContentType.ToString(),
            [ScheduledMessageData.MessageTypes] = string.Join(";", payloadTypes),
            [ScheduledMessageData.TokenId] = tokenId.ToString("D"),
            [ScheduledMessageData.MessageId] = messageId?.ToString("D"),
            [ScheduledMessageData.CorrelationId] = context.CorrelationId?.ToString("D"),
            [ScheduledMessageData.ConversationId] = context.ConversationId?.ToString("D"),
            [ScheduledMessageData.InitiatorId] = context.InitiatorId?.ToString("D"),
            [ScheduledMessageData.RequestId] = context.RequestId?.ToString("D"),
            [ScheduledMessageData.SourceAddress] = context.SourceAddress?.ToString(),
            [ScheduledMessageData.ResponseAddress] = context.ResponseAddress?.ToString(),
            [ScheduledMessageData.FaultAddress] = context.FaultAddress?.ToString(),
            [ScheduledMessageData.ExpirationTime] = context.ExpirationTime?.ToString("O"),
        };
        var headers = context.Headers.GetAll().ToDictionary(h => h.Key, h => h.Value);
        if (headers.Count > 0)
            data[ScheduledMessageData.Headers] = JsonSerializer.Serialize(headers);

        var map = new JobDataMap();
        foreach (var (key, value) in data)
        {
            if (value is not null)
                map[key] = value;
        }

        return map;
    }

    static async Task<JobKey> EnsureJob(IScheduler scheduler, CancellationToken cancellationToken)
    {
        var key = new JobKey(ScheduledMessageData.JobName);
        if (await scheduler.Exists(key, cancellationToken).ConfigureAwait(false))
            return key;

        var job = JobBuilder.Create<ScheduledMessageJob>()
            .WithIdentity(key)
            .WithDescription("Delivers messages scheduled through MassTransit's IMessageScheduler")
            .StoreDurably()
            .RequestRecovery()
            .Build();
        try
        {
            await scheduler.AddJob(job, AddJobOptions.Replacing, cancellationToken).ConfigureAwait(false);
        }
        catch (ObjectAlreadyExistsException)
        {
            // Another host added it at the same moment.
        }

        return key;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Scheduled {TokenId} to {Destination} at {FireAt:O}")]
    static partial void LogScheduled(ILogger logger, Guid tokenId, Uri destination, DateTimeOffset fireAt);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Scheduled recurring {ScheduleId}/{ScheduleGroup} ({Cron}) to {Destination}")]
    static partial void LogRecurring(ILogger logger, string scheduleId, string scheduleGroup, string cron, Uri destination);
}

/// <summary>Cancels scheduled messages: the trigger is removed in the database, so no host will deliver it.</summary>
sealed partial class CancelScheduledMessageConsumer(ISchedulerFactory schedulerFactory, SagasMetrics metrics, ILogger<CancelScheduledMessageConsumer> logger) :
    IConsumer<CancelScheduledMessage>,
    IConsumer<CancelScheduledRecurringMessage>
{
    public async Task Consume(ConsumeContext<CancelScheduledMessage> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scheduler = await schedulerFactory.GetScheduler(context.CancellationToken).ConfigureAwait(false);
        var removed = await scheduler.UnscheduleJob(QuartzKeys.Trigger(context.Message.TokenId), context.CancellationToken).ConfigureAwait(false);
        if (removed)
            metrics.Cancelled.Add(1);
        LogCancelled(logger, context.Message.TokenId.ToString("D"), removed);
    }

    public async Task Consume(ConsumeContext<CancelScheduledRecurringMessage> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scheduler = await schedulerFactory.GetScheduler(context.CancellationToken).ConfigureAwait(false);
        var key = QuartzKeys.Recurring(context.Message.ScheduleId, context.Message.ScheduleGroup);
        var removed = await scheduler.UnscheduleJob(key, context.CancellationToken).ConfigureAwait(false);
        if (removed)
            metrics.Cancelled.Add(1);
        LogCancelled(logger, key.ToString(), removed);
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Cancel {Key}: {Removed}")]
    static partial void LogCancelled(ILogger logger, string key, bool removed);
}

/// <summary>Trigger names of scheduled messages.</summary>
static class QuartzKeys
{
    public static TriggerKey Trigger(Guid tokenId) => new(tokenId.ToString("N"));

    public static TriggerKey Recurring(string scheduleId, string? scheduleGroup)
    {
        var name = scheduleId.StartsWith(ScheduledMessageData.RecurringPrefix, StringComparison.Ordinal) ? scheduleId : ScheduledMessageData.RecurringPrefix + scheduleId;
        return string.IsNullOrWhiteSpace(scheduleGroup) ? new TriggerKey(name) : new TriggerKey(name, scheduleGroup);
    }
}
