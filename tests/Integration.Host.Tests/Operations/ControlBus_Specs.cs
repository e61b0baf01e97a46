using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Operations;
using Integration.Testing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

public sealed record ControlProbe(Guid Id);

/// <summary>The control bus on the real host, broker and database: every command, authorization, audit, both channels.</summary>
[TestFixture]
[Category("Integration")]
public sealed class ControlBus_Specs
{
    const string OperatorKey = ControlHost.OperatorKey;
    const string ViewerKey = ControlHost.ViewerKey;

    ControlHost _host = null!;

    [SetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("control");

    [TearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    Task<(HttpStatusCode Status, JsonElement Body)> Send(HttpMethod method, string path, string? key, object? body = null) => _host.Send(method, path, key, body);

    Task<List<ControlAuditRecord>> Audit() => _host.Audit();

    async Task<Func<int>> ConnectProbeEndpoint(string queue)
    {
        var consumed = 0;
        await _host.ConnectEndpoint(queue, e => e.Handler<ControlProbe>(_ =>
        {
            Interlocked.Increment(ref consumed);
            return Task.CompletedTask;
        }));
        return () => Volatile.Read(ref consumed);
    }

    [Test]
    public async Task When_no_key_is_given_should_answer_401_and_audit_the_attempt()
    {
        var (status, _) = await Send(HttpMethod.Get, "/api/control/routes", key: null);
        var (wrong, _) = await Send(HttpMethod.Post, "/api/control/endpoints/anything/pause", key: "not-a-real-key-at-all");

        Assert.Multiple(async () =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(wrong, Is.EqualTo(HttpStatusCode.Unauthorized));
            var audit = await Audit();
            Assert.That(audit.Count(a => a.Outcome == "unauthorized" && a.Actor == "anonymous"), Is.EqualTo(2));
            Assert.That(audit.Single(a => a.Action == "endpoint.pause").Target, Is.EqualTo("anything"));
        });
    }

    [Test]
    public async Task When_viewer_tries_to_pause_should_answer_403_and_change_nothing()
    {
        var consumed = await ConnectProbeEndpoint("control-probe");

        var (status, _) = await Send(HttpMethod.Post, "/api/control/endpoints/control-probe/pause", ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.Forbidden));
        await _host.SendTo("control-probe", new ControlProbe(Guid.NewGuid()));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(consumed() == 1), TimeSpan.FromSeconds(10)), Is.True,
            "the endpoint stopped consuming although the pause was refused");
        var audit = await Audit();
        Assert.That(audit.Single(a => a.Action == "endpoint.pause"), Has.Property("Actor").EqualTo("dashboard").And.Property("Outcome").EqualTo("denied"));
    }

    [Test]
    public async Task When_operator_pauses_an_endpoint_should_hold_messages_until_resumed()
    {
        var consumed = await ConnectProbeEndpoint("control-probe");

        var (paused, _) = await Send(HttpMethod.Post, "/api/control/endpoints/control-probe/pause", OperatorKey);
        Assert.That(paused, Is.EqualTo(HttpStatusCode.OK));
        var (_, list) = await Send(HttpMethod.Get, "/api/control/endpoints", ViewerKey);
        Assert.That(list.GetProperty("data").EnumerateArray().Single(e => e.GetProperty("name").GetString() == "control-probe")
            .GetProperty("state").GetString(), Is.EqualTo("paused"));

        await _host.SendTo("control-probe", new ControlProbe(Guid.NewGuid()));
        Assert.That(await Eventually.TrueAsync(async () => await _host.Broker.QueueMessageCountAsync("control-probe") == 1, TimeSpan.FromSeconds(15)), Is.True,
            "the message should wait in the queue while the endpoint is paused");
        Assert.That(consumed(), Is.Zero);

        var (resumed, _) = await Send(HttpMethod.Post, "/api/control/endpoints/control-probe/resume", OperatorKey);
        Assert.That(resumed, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(consumed() == 1), TimeSpan.FromSeconds(15)), Is.True, "not consumed after resume");
        var audit = await Audit();
        Assert.That(audit.Where(a => a.Outcome == "ok").Select(a => a.Action), Does.Contain("endpoint.pause").And.Contain("endpoint.resume"));
    }

    [Test]
    public async Task When_endpoint_is_unknown_should_answer_404()
    {
        var (status, body) = await Send(HttpMethod.Post, "/api/control/endpoints/no-such-queue/pause", OperatorKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain("no-such-queue"));
    }

    [Test]
    public async Task When_routes_are_listed_should_show_each_endpoint_with_its_pipeline()
    {
        var (status, body) = await Send(HttpMethod.Get, "/api/control/routes", ViewerKey);

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        var text = body.GetProperty("data").GetRawText();
        Assert.That(text, Does.Contain("control-bus-"), "the control queue's own endpoint should be listed");
        Assert.That(text, Does.Contain("ControlCommandMessage"), "the pipeline should show what the endpoint consumes");
    }

    [Test]
    public async Task When_log_level_is_changed_should_apply_at_once()
    {
        var loggers = _host.Services.GetRequiredService<ILoggerFactory>();
        Assert.That(loggers.CreateLogger("Integration.Probe").IsEnabled(LogLevel.Debug), Is.False, "precondition: Debug off by default");

        var (status, _) = await Send(HttpMethod.Put, "/api/control/log-level", OperatorKey, new { category = "Integration.Probe", level = "Debug" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(loggers.CreateLogger("Integration.Probe").IsEnabled(LogLevel.Debug)), TimeSpan.FromSeconds(5)),
            Is.True);
    }

    [Test]
    public async Task When_log_level_is_not_a_level_should_answer_400_naming_the_levels()
    {
        var (status, body) = await Send(HttpMethod.Put, "/api/control/log-level", OperatorKey, new { category = "X", level = "Loud" });

        Assert.That(status, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(body.GetProperty("detail").GetString(), Does.Contain("Debug").And.Contain("Warning"));
    }

    [Test]
    public async Task When_command_comes_over_rabbitmq_with_a_key_should_apply_and_reply()
    {
        var bus = _host.Services.GetRequiredService<IBus>();
        var client = bus.CreateRequestClient<ControlCommandMessage>();

        var response = await client.GetResponse<ControlCommandReply>(
            new ControlCommandMessage("log-level.set", "Integration.Amqp", new Dictionary<string, string> { ["level"] = "Trace" }),
            x => x.UseExecute(send => send.Headers.Set(ControlCommandMessage.KeyHeader, OperatorKey)));

        Assert.That(response.Message.Outcome, Is.EqualTo("Ok"));
        var loggers = _host.Services.GetRequiredService<ILoggerFactory>();
        Assert.That(loggers.CreateLogger("Integration.Amqp").IsEnabled(LogLevel.Trace), Is.True);
        Assert.That((await Audit()).Single(a => a.Channel == "amqp"), Has.Property("Actor").EqualTo("ops").And.Property("Outcome").EqualTo("ok"));
    }

    [Test]
    public async Task When_command_comes_over_rabbitmq_without_a_key_should_refuse_and_change_nothing()
    {
        var bus = _host.Services.GetRequiredService<IBus>();
        var client = bus.CreateRequestClient<ControlCommandMessage>();

        var response = await client.GetResponse<ControlCommandReply>(
            new ControlCommandMessage("log-level.set", "Integration.Sneaky", new Dictionary<string, string> { ["level"] = "Trace" }));

        Assert.That(response.Message.Outcome, Is.EqualTo("Unauthorized"));
        var loggers = _host.Services.GetRequiredService<ILoggerFactory>();
        Assert.That(loggers.CreateLogger("Integration.Sneaky").IsEnabled(LogLevel.Trace), Is.False);
        Assert.That((await Audit()).Single(a => a.Channel == "amqp").Outcome, Is.EqualTo("unauthorized"));
    }
}
