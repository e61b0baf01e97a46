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
        if (!TryParse(text, out var deadline))
            throw new SerializationException($"The {Header} header '{text}' is not an ISO-8601 UTC time (e.g. 2026-12-01T16:10:00Z)");
        return deadline;
    }

    /// <summary>
    /// The deadline an HTTP request carries: the value of its <see cref="Header"/> header (absolute UTC, ISO-8601), or null
    /// when it carries none (null, empty or blank). Pass <c>request.Headers[MessageDeadline.Header].ToString()</c>: a
    /// header sent twice is read as one malformed value.
    /// </summary>
    /// <exception cref="FormatException">The value is not an ISO-8601 time; the message names the header and the value.</exception>
    public static MessageDeadline? FromHttpHeader(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            return null;
        return TryParse(value, out var deadline)
            ? deadline
            : throw new FormatException($"The {Header} header '{value}' is not an ISO-8601 UTC time (e.g. 2026-12-01T16:10:00Z)");
    }

    static bool TryParse(string text, out MessageDeadline deadline)
    {
        var parsed = DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at);
        deadline = parsed ? new MessageDeadline(at) : null!;
        return parsed;
    }

    /// <summary>
    /// Starts a hop whose own budget is <paramref name="budget"/> under this deadline: its timeout is
    /// <c>min(left, budget)</c> (<see cref="HopTimeout"/>), and its <see cref="DeadlineHop.Token"/> is cancelled when that
    /// runs out or <paramref name="cancellationToken"/> is. Dispose it when the hop is done.
    /// </summary>
    /// <exception cref="DeadlineExceededException">The deadline has passed: the hop must not start.</exception>
    public DeadlineHop StartHop(TimeSpan budget, CancellationToken cancellationToken = default, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        var timeout = HopTimeout(this, budget, time);
        return new DeadlineHop(new MessageDeadline(time.GetUtcNow() + timeout), timeout, cancellationToken, time);
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

/// <summary>
/// One hop under a deadline (<see cref="MessageDeadline.StartHop"/>): its own <see cref="Deadline"/> (what the next hop
/// starts from), its <see cref="Timeout"/>, and a <see cref="Token"/> cancelled when the timeout runs out or the caller's
/// token is cancelled. Dispose it when the hop is done.
/// </summary>
public sealed class DeadlineHop : IDisposable
{
    readonly CancellationTokenSource _timer;
    readonly CancellationTokenSource? _linked;

    internal DeadlineHop(MessageDeadline deadline, TimeSpan timeout, CancellationToken cancellationToken, TimeProvider time)
    {
        Deadline = deadline;
        Timeout = timeout;
        _timer = new CancellationTokenSource(timeout, time);
        _linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(_timer.Token, cancellationToken) : null;
        Token = (_linked ?? _timer).Token;
    }

    /// <summary>This hop's deadline: the one it started under, or its budget from its start if that was sooner.</summary>
    public MessageDeadline Deadline { get; }

    /// <summary>This hop's timeout: <c>min(left, budget)</c> when it started.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Cancelled when <see cref="Timeout"/> runs out or the caller's token is cancelled.</summary>
    public CancellationToken Token { get; }

    /// <summary>True once this hop's own timeout has run out (not merely the caller's token).</summary>
    public bool TimedOut => _timer.IsCancellationRequested;

    /// <summary>The timeout in whole milliseconds, rounded up (at least 1): what a header or a log shows.</summary>
    public long TimeoutMilliseconds => DeadlineExtensions.Milliseconds(Timeout);

    /// <inheritdoc />
    public void Dispose()
    {
        _linked?.Dispose();
        _timer.Dispose();
    }
}
