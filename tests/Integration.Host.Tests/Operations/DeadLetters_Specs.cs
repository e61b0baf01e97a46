using System.Net;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

public sealed record DeadLetterProbe(int Number);

/// <summary>Dead letters through the control bus on a real broker: list with reasons, replay without loss, delete only with confirmation.</summary>
[TestFixture]
[Category("Integration")]
public sealed class DeadLetters_Specs
{
    const string Queue = "dl-orders";
    const string ErrorQueue = "dl-orders_error";

    ControlHost _host = null!;
    volatile bool _failing;
    readonly List<int> _consumed = [];

    [SetUp]
    public async Task StartHostWithThreeDeadLetters()
    {
        _failing = true;
        _consumed.Clear();
        _host = await ControlHost.StartAsync("deadletters");
        await _host.ConnectEndpoint(Queue, e => e.Handler<DeadLetterProbe>(context =>
        {
            if (_failing)
                throw new InvalidOperationException($"boom {context.Message.Number}");
            lock (_consumed)
                _consumed.Add(context.Message.Number);
            return Task.CompletedTask;
        }));
        for (var i = 1; i <= 3; i++)
            await _host.SendTo(Queue, new DeadLetterProbe(i));
        Assert.That(await ErrorDepthBecomes(3), Is.True, "precondition: three failed messages in the error queue");
        _failing = false;
    }

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    Task<bool> ErrorDepthBecomes(long expected) =>
        Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync(ErrorQueue) == expected, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(250));

    int[] Consumed()
    {
        lock (_consumed)
            return [.. _consumed.Order()];
    }

    [Test]
    public async Task When_listed_should_show_error_queues_and_each_message_with_its_reason_leaving_them_in_place()
    {
        var (status, queues) = await _host.Send(HttpMethod.Get, "/api/control/dead-letters", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var queue = queues.GetProperty("data").EnumerateArray().Single(q => q.GetProperty("queue").GetString() == ErrorQueue);
        Assert.That(queue.GetProperty("originalQueue").GetString(), Is.EqualTo(Queue));

        var (peekStatus, letters) = await _host.Send(HttpMethod.Get, $"/api/control/dead-letters/{ErrorQueue}", ControlHost.ViewerKey);

        Assert.That(peekStatus, Is.EqualTo(HttpStatusCode.OK));
        var reasons = letters.GetProperty("data").EnumerateArray().Select(l => l.GetProperty("reason").GetString()).ToList();
        Assert.That(reasons, Is.EquivalentTo(new[] { "boom 1", "boom 2", "boom 3" }));
        Assert.That(letters.GetProperty("data")[0].GetProperty("exceptionType").GetString(), Does.Contain("InvalidOperationException"));
        Assert.That(await ErrorDepthBecomes(3), Is.True, "peeking must leave the messages in the error queue");
    }

    [Test]
    public async Task When_one_message_is_replayed_should_consume_only_that_one()
    {
        var (_, letters) = await _host.Send(HttpMethod.Get, $"/api/control/dead-letters/{ErrorQueue}", ControlHost.ViewerKey);
        var second = letters.GetProperty("data").EnumerateArray().Single(l => l.GetProperty("reason").GetString() == "boom 2");

        var (status, _) = await _host.Send(HttpMethod.Post,
            $"/api/control/dead-letters/{ErrorQueue}/replay?messageId={second.GetProperty("messageId").GetString()}", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(Consumed().SequenceEqual([2])), TimeSpan.FromSeconds(15)), Is.True,
            () => $"consumed: {string.Join(",", Consumed())}");
        Assert.That(await ErrorDepthBecomes(2), Is.True);
    }

    [Test]
    public async Task When_all_are_replayed_should_consume_each_exactly_once_and_empty_the_error_queue()
    {
        var (status, body) = await _host.Send(HttpMethod.Post, $"/api/control/dead-letters/{ErrorQueue}/replay", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("data").GetProperty("replayed").GetInt32(), Is.EqualTo(3));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(Consumed().Length == 3), TimeSpan.FromSeconds(15)), Is.True);
        Assert.That(Consumed(), Is.EqualTo(new[] { 1, 2, 3 }), "each message consumed exactly once");
        Assert.That(await ErrorDepthBecomes(0), Is.True);
    }

    [Test]
    public async Task When_deleted_without_confirmation_should_refuse_and_keep_every_message()
    {
        var (status, body) = await _host.Send(HttpMethod.Delete, $"/api/control/dead-letters/{ErrorQueue}", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain($"confirm={ErrorQueue}"));
        Assert.That(await ErrorDepthBecomes(3), Is.True);
    }

    [Test]
    public async Task When_deleted_with_confirmation_should_empty_the_error_queue_and_audit_it()
    {
        var (status, body) = await _host.Send(HttpMethod.Delete, $"/api/control/dead-letters/{ErrorQueue}?confirm={ErrorQueue}", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("data").GetProperty("deleted").GetInt64(), Is.EqualTo(3));
        Assert.That(await ErrorDepthBecomes(0), Is.True);
        Assert.That((await _host.Audit()).Single(a => a.Action == "dead-letters.delete"), Has.Property("Actor").EqualTo("ops").And.Property("Outcome").EqualTo("ok"));
    }

    [Test]
    public async Task When_viewer_replays_should_answer_403_and_move_nothing()
    {
        var (status, _) = await _host.Send(HttpMethod.Post, $"/api/control/dead-letters/{ErrorQueue}/replay", ControlHost.ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await ErrorDepthBecomes(3), Is.True);
        Assert.That(Consumed(), Is.Empty);
    }
}
