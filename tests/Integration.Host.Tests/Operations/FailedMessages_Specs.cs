using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integration.Operations;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

public sealed record FailingOrder(int Number);

public sealed record FailingInvoice(int Number);

/// <summary>
/// Failed messages through the control API on a real broker: grouped by exception, message type and step; retried by
/// group and by filter; edited and retried with the original archived and the edit audited; viewers refused.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class FailedMessages_Specs
{
    const string Queue = "fm-orders";
    const string ErrorQueue = "fm-orders_error";

    ControlHost _host = null!;
    volatile bool _failing;
    readonly List<string> _consumed = [];

    [SetUp]
    public async Task StartHostWithTwoFailureGroups()
    {
        _failing = true;
        _consumed.Clear();
        _host = await ControlHost.StartAsync("failures");
        await _host.ConnectEndpoint(Queue, e =>
        {
            e.Handler<FailingOrder>(context =>
            {
                if (_failing)
                    throw new InvalidOperationException($"order boom {context.Message.Number}");
                Consumed($"order {context.Message.Number}");
                return Task.CompletedTask;
            });
            e.Handler<FailingInvoice>(context =>
            {
                if (_failing)
                    throw new ArgumentException($"invoice boom {context.Message.Number}");
                Consumed($"invoice {context.Message.Number}");
                return Task.CompletedTask;
            });
        });
        for (var i = 1; i <= 3; i++)
            await _host.SendTo(Queue, new FailingOrder(i));
        await _host.SendTo(Queue, new FailingInvoice(9));
        Assert.That(await ErrorDepthBecomes(4), Is.True, "precondition: four failed messages in the error queue");
        _failing = false;
    }

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    void Consumed(string what)
    {
        lock (_consumed)
            _consumed.Add(what);
    }

    string[] ConsumedSoFar()
    {
        lock (_consumed)
            return [.. _consumed.Order(StringComparer.Ordinal)];
    }

    Task<bool> ErrorDepthBecomes(long expected) =>
        Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync(ErrorQueue) == expected, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(250));

    Task<bool> ConsumedBecomes(params string[] expected) =>
        Eventually.TrueAsync(() => Task.FromResult(ConsumedSoFar().SequenceEqual(expected.Order(StringComparer.Ordinal))), TimeSpan.FromSeconds(15));

    async Task<JsonElement> Group(string exceptionType)
    {
        var (status, groups) = await _host.Send(HttpMethod.Get, $"/api/control/failures?queue={ErrorQueue}", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        return groups.EnumerateArray().Single(g => g.GetProperty("exceptionType").GetString()!.Contains(exceptionType, StringComparison.Ordinal));
    }

    [Test]
    public async Task When_listed_should_group_by_exception_and_message_type_with_count_times_and_an_example()
    {
        var (status, groups) = await _host.Send(HttpMethod.Get, "/api/control/failures", ControlHost.ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(groups.ValueKind, Is.EqualTo(JsonValueKind.Array), "the contract: a JSON array of groups");
        var mine = groups.EnumerateArray().Where(g => g.GetProperty("queue").GetString() == ErrorQueue).ToList();
        Assert.That(mine, Has.Count.EqualTo(2));
        var orders = await Group("InvalidOperationException");
        Assert.That(orders.GetProperty("count").GetInt32(), Is.EqualTo(3));
        Assert.That(orders.GetProperty("messageType").GetString(), Does.Contain(nameof(FailingOrder)));
        Assert.That(orders.GetProperty("sourceQueue").GetString(), Is.EqualTo(Queue));
        Assert.That(orders.GetProperty("firstSeen").GetDateTimeOffset(), Is.LessThanOrEqualTo(orders.GetProperty("lastSeen").GetDateTimeOffset()));
        Assert.That(orders.GetProperty("example").GetProperty("reason").GetString(), Does.StartWith("order boom"));
        Assert.That(orders.GetProperty("example").GetProperty("stackTrace").GetString(), Is.Not.Empty);
        Assert.That((await Group("ArgumentException")).GetProperty("count").GetInt32(), Is.EqualTo(1));
        Assert.That(await ErrorDepthBecomes(4), Is.True, "listing must leave the messages in the error queue");
    }

    [Test]
    public async Task When_a_group_is_retried_should_answer_202_with_the_number_moved_and_consume_each_once()
    {
        var orders = await Group("InvalidOperationException");

        var (status, body) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{orders.GetProperty("id").GetString()}/retry", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That(body.GetProperty("moved").GetInt32(), Is.EqualTo(3));
        Assert.That(await ConsumedBecomes("order 1", "order 2", "order 3"), Is.True, () => string.Join(",", ConsumedSoFar()));
        Assert.That(await ErrorDepthBecomes(1), Is.True, "the other group stays");
        Assert.That((await Group("ArgumentException")).GetProperty("count").GetInt32(), Is.EqualTo(1));
        Assert.That((await _host.Audit()).Single(a => a.Action == "failures.retry"), Has.Property("Actor").EqualTo("ops").And.Property("Outcome").EqualTo("ok"));
    }

    [Test]
    public async Task When_a_filter_is_retried_should_move_only_the_messages_whose_reason_matches()
    {
        var (status, body) = await _host.Send(HttpMethod.Post, "/api/control/failures/retry", ControlHost.OperatorKey,
            new { queue = ErrorQueue, reason = "order boom 2" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Accepted));
        Assert.That(body.GetProperty("moved").GetInt32(), Is.EqualTo(1));
        Assert.That(await ConsumedBecomes("order 2"), Is.True, () => string.Join(",", ConsumedSoFar()));
        Assert.That(await ErrorDepthBecomes(3), Is.True);
    }

    [Test]
    public async Task When_a_filter_is_empty_should_refuse_to_retry_everything()
    {
        var (status, body) = await _host.Send(HttpMethod.Post, "/api/control/failures/retry", ControlHost.OperatorKey, new { });

        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain("needs a group id or a filter"));
        Assert.That(await ErrorDepthBecomes(4), Is.True);
    }

    [Test]
    public async Task When_a_message_is_edited_and_retried_should_consume_the_edit_keep_the_original_and_audit_the_edit()
    {
        var orders = await Group("InvalidOperationException");
        var (_, messages) = await _host.Send(HttpMethod.Get, $"/api/control/failures/{orders.GetProperty("id").GetString()}", ControlHost.ViewerKey);
        var second = messages.EnumerateArray().Single(m => m.GetProperty("reason").GetString() == "order boom 2");
        var envelope = JsonNode.Parse(second.GetProperty("body").GetString()!)!;
        envelope["message"]!["number"] = 20;
        var messageId = second.GetProperty("messageId").GetString();

        var (status, body) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{ErrorQueue}/messages/{messageId}/retry", ControlHost.OperatorKey,
            new { body = envelope.ToJsonString(), headers = new Dictionary<string, string?> { ["X-Fixed-By"] = "ops" } });

        Assert.That(status, Is.EqualTo(HttpStatusCode.Accepted), body.ToString());
        Assert.That(await ConsumedBecomes("order 20"), Is.True, () => string.Join(",", ConsumedSoFar()));
        Assert.That(await ErrorDepthBecomes(3), Is.True);
        var archived = await _host.Services.GetRequiredService<MessageStore>()
            .FindAsync(new MessageQuery(null, null, null, null, FailedMessageService.ArchivePrefix + ErrorQueue), CancellationToken.None);
        Assert.That(archived, Has.Count.EqualTo(1), "the original is kept in the message store");
        Assert.That(archived[0].Id, Is.EqualTo(body.GetProperty("archivedId").GetInt64()));
        Assert.That(archived[0].MessageId, Is.EqualTo(messageId));
        Assert.That(JsonNode.Parse(archived[0].Body)!["message"]!["number"]!.GetValue<int>(), Is.EqualTo(2), "the archived copy is the original, unedited");
        var audit = (await _host.Audit()).Single(a => a.Action == "failures.edit-retry");
        Assert.That(audit, Has.Property("Actor").EqualTo("ops").And.Property("Outcome").EqualTo("ok").And.Property("Target").EqualTo(ErrorQueue));
        Assert.That(audit.Details, Does.Contain(messageId).And.Contain("X-Fixed-By").And.Contain("20"));
    }

    [Test]
    public async Task When_an_edited_json_body_is_not_json_should_refuse_and_keep_the_message()
    {
        var orders = await Group("InvalidOperationException");
        var messageId = orders.GetProperty("example").GetProperty("messageId").GetString();

        var (status, body) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{ErrorQueue}/messages/{messageId}/retry", ControlHost.OperatorKey,
            new { body = "{ not json" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain("not valid JSON"));
        Assert.That(await ErrorDepthBecomes(4), Is.True);
    }

    [Test]
    public async Task When_a_viewer_retries_or_edits_should_answer_403_and_move_nothing()
    {
        var orders = await Group("InvalidOperationException");
        var id = orders.GetProperty("id").GetString();
        var messageId = orders.GetProperty("example").GetProperty("messageId").GetString();

        var (retry, _) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{id}/retry", ControlHost.ViewerKey);
        var (edit, _) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{ErrorQueue}/messages/{messageId}/retry", ControlHost.ViewerKey,
            new { body = "{}" });
        var (discard, _) = await _host.Send(HttpMethod.Delete, $"/api/control/failures/{id}?confirm={id}", ControlHost.ViewerKey);
        var (anonymous, _) = await _host.Send(HttpMethod.Get, "/api/control/failures", null);

        Assert.That(new[] { retry, edit, discard }, Is.All.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(anonymous, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(await ErrorDepthBecomes(4), Is.True);
        Assert.That(ConsumedSoFar(), Is.Empty);
        Assert.That((await _host.Audit()).Count(a => a.Outcome == "denied"), Is.EqualTo(3));
    }

    [Test]
    public async Task When_a_group_is_archived_should_need_confirmation_then_keep_each_message_in_the_store()
    {
        var orders = await Group("InvalidOperationException");
        var id = orders.GetProperty("id").GetString();

        var (refused, refusal) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{id}/archive", ControlHost.OperatorKey);
        Assert.That(refused, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(refusal.GetProperty("detail").GetString(), Does.Contain($"confirm={id}"));

        var (status, body) = await _host.Send(HttpMethod.Post, $"/api/control/failures/{id}/archive?confirm={id}", ControlHost.OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(body.GetProperty("archived").GetInt32(), Is.EqualTo(3));
        Assert.That(await ErrorDepthBecomes(1), Is.True);
        var archived = await _host.Services.GetRequiredService<MessageStore>()
            .FindAsync(new MessageQuery(null, null, null, null, FailedMessageService.ArchivePrefix + ErrorQueue), CancellationToken.None);
        Assert.That(archived, Has.Count.EqualTo(3));
        Assert.That(ConsumedSoFar(), Is.Empty);
    }
}
