using MassTransit;

namespace Integration.Operations;

/// <summary>
/// A control command sent over RabbitMQ; the key travels in the <see cref="KeyHeader"/> header. Its wire names are
/// fixed (<c>urn:message:integration:control-command</c>, exchange <c>integration.control-command</c>) whatever the
/// CLR namespace, so senders in other languages or versions keep reaching it.
/// </summary>
/// <param name="Action">What to do, e.g. <c>log-level.set</c>.</param>
/// <param name="Target">What to do it to.</param>
/// <param name="Arguments">Named arguments.</param>
[MessageUrn("integration:control-command")]
[EntityName("integration.control-command")]
public sealed record ControlCommandMessage(string Action, string? Target, Dictionary<string, string>? Arguments)
{
    /// <summary>Header carrying the control bus key.</summary>
    public const string KeyHeader = "Integration-Control-Key";
}

/// <summary>The reply to a <see cref="ControlCommandMessage"/> sent as a request.</summary>
/// <param name="Outcome">A <see cref="ControlOutcome"/> name.</param>
/// <param name="Message">What happened.</param>
/// <param name="Instance">The host instance that answered.</param>
[MessageUrn("integration:control-command-reply")]
[EntityName("integration.control-command-reply")]
public sealed record ControlCommandReply(string Outcome, string Message, string Instance);

/// <summary>
/// Runs control commands published to the bus. Every host instance has its own auto-delete queue bound to the command's
/// exchange, so a published command reaches every instance (log levels, pauses and switches are per process).
/// A refused command is audited and acknowledged (it was handled: the answer is no); it is never retried.
/// </summary>
sealed class ControlCommandConsumer(ControlBus bus, ControlAuthorization auth) : IConsumer<ControlCommandMessage>
{
    public async Task Consume(ConsumeContext<ControlCommandMessage> context)
    {
        var caller = await auth.AuthenticateAsync(context.Headers.Get<string>(ControlCommandMessage.KeyHeader), context.CancellationToken).ConfigureAwait(false);
        var message = context.Message;
        var result = await bus.ExecuteAsync(caller, "amqp", new ControlCommand(message.Action, message.Target, message.Arguments), context.CancellationToken)
            .ConfigureAwait(false);
        if (context.RequestId.HasValue)
            await context.RespondAsync(new ControlCommandReply(result.Outcome.ToString(), result.Message, Environment.MachineName)).ConfigureAwait(false);
    }
}
