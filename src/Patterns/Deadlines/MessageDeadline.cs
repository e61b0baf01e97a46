using System.Globalization;
using System.Runtime.Serialization;
using MassTransit;

namespace Integration.Patterns.Deadlines;

/// <summary>Thrown when a hop cannot start because the deadline it works under has passed (or leaves it no time).</summary>
public sealed class DeadlineExceededException(string message) : TimeoutException(message);

/// <summary>
/// The moment by which a request or command must be done, end to end: it travels with the message as the
/// <see cref="Header"/> header (absolute UTC, ISO-8601 round-trip format, e.g. <c>2026-12-01T16:10:00.0000000Z</c>), and each
/// hop derives its own timeout from what is left, capped by its own budget (<see cref="Hop"/>), so the timeouts shrink
/// along the way and no hop waits for an answer its caller has stopped waiting for. Immutable.
/// </summary>
public sealed record MessageDeadline
{
    /// <summary>Transport header carrying the deadline.</summary>
    public const string Header = "Integration-Deadline";

    /// <summary>Header of a message moved to <c>&lt;queue&gt;_skipped</c> because its deadline had passed: why.</summary>
    public const string SkippedReasonHeader = "Integration-Skipped-Reason";

    /// <summary>A deadline at <paramref name="at"/> (kept in UTC).</summary>
    public MessageDeadline(DateTimeOffset at) => At = at.ToUniversalTime();

    /// <summary>The moment, in UTC.</summary>
    public DateTimeOffset At { get; }

    /// <summary>A deadline <paramref name="budget"/> from now.</summary>
    public static MessageDeadline After(TimeSpan budget, TimeProvider? time = null) => new((time ?? TimeProvider.System).GetUtcNow() + budget);

    /// <summary>The deadline a message carries, or null when it carries none.</summary>
    /// <exception cref="SerializationException">The header is there but is not an ISO-8601 time with an offset; the message says so.</exception>
    public static MessageDeadline? From(Headers headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (!headers.TryGetHeader(Header, out var value) || value is null)
            return null;
        var text = value switch { DateTimeOffset d => d.ToString("O", CultureInfo.InvariantCulture), DateTime d => d.ToString("O", CultureInfo.InvariantCulture), _ => value.ToString() };
        if (string.IsNullOrWhiteSpace(text))
            return null;
        if (!DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
            throw new SerializationException($"The {Header} header '{text}' is not an ISO-8601 UTC time (e.g. 2026-12-01T16:10:00Z)");
        return new MessageDeadline(at);
    }

    /// <summary>The deadline the consumed message works under: the one a route or filter settled on, else its header.</summary>
    public static MessageDeadline? Of(ConsumeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.TryGetPayload(out Settled? settled) ? settled.Deadline : From(context.Headers);
    }

    /// <summary>Time left (negative once passed).</summary>
    public TimeSpan Remaining(TimeProvider? time = null) => At - (time ?? TimeProvider.System).GetUtcNow();

    /// <summary>True once the deadline has passed.</summary>
    public bool HasPassed(TimeProvider? time = null) => Remaining(time) <= TimeSpan.Zero;

    /// <summary>The deadline of the next hop: this one, or <paramref name="budget"/> from now if that is sooner.</summary>
    public MessageDeadline Hop(TimeSpan budget, TimeProvider? time = null)
    {
        var capped = (time ?? TimeProvider.System).GetUtcNow() + budget;
        return capped < At ? new MessageDeadline(capped) : this;
    }

    /// <summary>
    /// The timeout of a hop whose own budget is <paramref name="budget"/>, under <paramref name="deadline"/> (none: the whole budget).
    /// </summary>
    /// <exception cref="DeadlineExceededException">The deadline has passed: the hop must not start.</exception>
    public static TimeSpan HopTimeout(MessageDeadline? deadline, TimeSpan budget, TimeProvider? time = null)
    {
        if (deadline is null)
            return budget;
        var remaining = deadline.Remaining(time);
        if (remaining <= TimeSpan.Zero)
            throw new DeadlineExceededException($"The deadline {deadline} passed {(-remaining).TotalMilliseconds:F0} ms ago; the hop was not started");
        return remaining < budget ? remaining : budget;
    }

    /// <summary>Writes the deadline on a message being sent.</summary>
    public void WriteTo(SendContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Headers.Set(Header, ToString());
    }

    /// <summary>The header's text: ISO-8601 round-trip format, UTC.</summary>
    public override string ToString() => At.UtcDateTime.ToString("O", CultureInfo.InvariantCulture);

    /// <summary>Settles the deadline the consumed message works under (what its sends carry).</summary>
    internal static void Settle(ConsumeContext context, MessageDeadline deadline) => context.GetOrAddPayload(() => new Settled(deadline));

    internal sealed class Settled(MessageDeadline deadline)
    {
        public MessageDeadline Deadline { get; } = deadline;
    }
}
