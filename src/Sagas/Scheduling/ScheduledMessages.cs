using Quartz;

namespace Integration.Sagas.Scheduling;

/// <summary>Where the durable scheduler keeps a scheduled message, for tools that inspect or repair it (the operations library).</summary>
public static class ScheduledMessages
{
    /// <summary>The Quartz trigger of the message scheduled with <paramref name="tokenId"/> (MassTransit's scheduling token).</summary>
    public static TriggerKey TriggerOf(Guid tokenId) => QuartzKeys.Trigger(tokenId);
}
