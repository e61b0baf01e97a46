using Integration.Patterns.Deadlines;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>
/// A hop of an HTTP request under its deadline: <see cref="MessageDeadline.FromHttpHeader"/> reads the header's value,
/// <see cref="MessageDeadline.StartHop"/> derives the hop's timeout (<c>min(left, budget)</c>) and a token cancelled when
/// it runs out.
/// </summary>
[TestFixture]
public sealed class DeadlineHop_Specs
{
    /// <summary>A clock standing still at <see cref="Now"/>; its timers are the system's.</summary>
    sealed class StillClock : TimeProvider
    {
        public static readonly DateTimeOffset Now = new(2026, 12, 1, 16, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    static readonly StillClock Clock = new();

    [Test]
    public void When_the_header_is_absent_or_blank_should_read_no_deadline()
    {
        Assert.Multiple(() =>
        {
            Assert.That(MessageDeadline.FromHttpHeader(null), Is.Null);
            Assert.That(MessageDeadline.FromHttpHeader(""), Is.Null);
            Assert.That(MessageDeadline.FromHttpHeader("  "), Is.Null);
        });
    }

    [Test]
    public void When_the_header_is_an_iso_8601_time_should_read_it_in_utc()
    {
        Assert.Multiple(() =>
        {
            Assert.That(MessageDeadline.FromHttpHeader("2026-12-01T16:10:00.0000000Z")!.At, Is.EqualTo(StillClock.Now.AddMinutes(10)));
            Assert.That(MessageDeadline.FromHttpHeader("2026-12-01T17:10:00+01:00")!.At, Is.EqualTo(StillClock.Now.AddMinutes(10)));
            Assert.That(MessageDeadline.FromHttpHeader("2026-12-01T16:10:00")!.At, Is.EqualTo(StillClock.Now.AddMinutes(10)), "no offset: UTC");
        });
    }

    [Test]
    public void When_the_header_is_malformed_should_throw_naming_the_header_and_the_value()
    {
        var error = Assert.Throws<FormatException>(() => MessageDeadline.FromHttpHeader("tomorrow-ish"));
        Assert.That(error!.Message, Is.EqualTo("The Integration-Deadline header 'tomorrow-ish' is not an ISO-8601 UTC time (e.g. 2026-12-01T16:10:00Z)"));
    }

    [Test]
    public void When_less_is_left_than_the_budget_should_shrink_the_hop_to_what_is_left()
    {
        var deadline = new MessageDeadline(StillClock.Now.AddSeconds(10));

        using var gateway = deadline.StartHop(TimeSpan.FromSeconds(25), time: Clock);
        using var service = gateway.Deadline.StartHop(TimeSpan.FromSeconds(5), time: Clock);

        Assert.Multiple(() =>
        {
            Assert.That(gateway.Timeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(gateway.TimeoutMilliseconds, Is.EqualTo(10_000));
            Assert.That(gateway.Deadline, Is.EqualTo(deadline));
            Assert.That(service.Timeout, Is.EqualTo(TimeSpan.FromSeconds(5)), "the budget, when it is shorter than what is left");
            Assert.That(service.Deadline.At, Is.EqualTo(StillClock.Now.AddSeconds(5)), "the next hop starts from the shorter deadline");
            Assert.That(service.Token.IsCancellationRequested, Is.False);
        });
    }

    [Test]
    public void When_the_deadline_has_passed_should_not_start_the_hop()
    {
        var deadline = new MessageDeadline(StillClock.Now.AddMilliseconds(-1500));

        var error = Assert.Throws<DeadlineExceededException>(() => deadline.StartHop(TimeSpan.FromSeconds(15), time: Clock));
        Assert.That(error!.Message, Does.Contain("passed 1500 ms ago").And.Contain("not started"));
    }

    [Test]
    public void When_the_hop_timeout_runs_out_should_cancel_its_token_and_say_so()
    {
        using var hop = MessageDeadline.After(TimeSpan.FromMilliseconds(50)).StartHop(TimeSpan.FromSeconds(15));

        Assert.That(async () => await Task.Delay(System.Threading.Timeout.InfiniteTimeSpan, hop.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(hop.TimedOut, Is.True);
    }

    [Test]
    public void When_the_caller_cancels_should_cancel_the_hop_without_a_timeout()
    {
        using var caller = new CancellationTokenSource();
        using var hop = MessageDeadline.After(TimeSpan.FromMinutes(1)).StartHop(TimeSpan.FromSeconds(15), caller.Token);

        caller.Cancel();

        Assert.Multiple(() =>
        {
            Assert.That(hop.Token.IsCancellationRequested, Is.True);
            Assert.That(hop.TimedOut, Is.False);
        });
    }
}
