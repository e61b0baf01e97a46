using System.Net;
using System.Text.Json;
using Integration.Host.Tests.Fulfillment;
using NUnit.Framework;

namespace Integration.Host.Tests.Operations;

/// <summary>
/// The graph's saga links include the events whose names hold a dot: a schedule's (<c>ApprovalTimeout.Received</c>),
/// drawn from the definition and counted when the timeout fires; MassTransit's own <c>AnyReceived</c> handler is not drawn.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class GraphSchedule_Specs
{
    const string Timeout = "ApprovalTimeout.Received";
    ControlHost _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() => _host = await ControlHost.StartAsync("graphsched", new Dictionary<string, string?>
    {
        ["Integration:Fulfillment:ApprovalQuantityLimit"] = "10",
        ["Integration:Fulfillment:ApprovalTimeout"] = "00:00:01",
    });

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    async Task<List<JsonElement>> Transitions()
    {
        var (status, graph) = await _host.Send(HttpMethod.Get, "/api/control/graph", ControlHost.ViewerKey);
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), () => graph.ToString());
        return graph.GetProperty("links").EnumerateArray().Where(l => l.GetProperty("kind").GetString() == "transition").ToList();
    }

    static JsonElement? TimeoutLink(IEnumerable<JsonElement> links) =>
        links.Select(l => (JsonElement?)l).SingleOrDefault(l => l!.Value.GetProperty("label").GetString() == Timeout);

    [Test]
    public async Task Should_link_awaiting_approval_to_releasing_the_reservation_by_the_timeout()
    {
        var links = await Transitions();

        var timeout = TimeoutLink(links);
        Assert.That(timeout, Is.Not.Null, () => $"transitions: {string.Join(", ", links.Select(l => l.GetProperty("label").GetString()))}");
        Assert.Multiple(() =>
        {
            Assert.That(timeout!.Value.GetProperty("source").GetString(), Is.EqualTo("state:order-fulfillment:AwaitingApproval"));
            Assert.That(timeout.Value.GetProperty("target").GetString(), Is.EqualTo("state:order-fulfillment:ReleasingReservation"));
            Assert.That(links.Select(l => l.GetProperty("label").GetString()), Has.None.EndsWith(".AnyReceived"), "MassTransit's own token handler is not a transition");
            Assert.That(links.Select(l => l.GetProperty("label").GetString()), Has.None.EndsWith(".Enter"), "nor are the states' enter events");
        });
    }

    [Test]
    public async Task When_the_approval_times_out_should_count_the_timeout_transition()
    {
        var orders = new OrdersClient(_host.Client);
        var orderId = await orders.Submit(("PUMP-1", 20));
        await orders.WaitFor(orderId, "Failed");

        var count = TimeoutLink(await Transitions())!.Value.GetProperty("count").GetInt64();

        Assert.That(count, Is.EqualTo(1));
    }
}
