using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using Integration.Host.Catalog;
using Integration.Patterns.Deadlines;
using Integration.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;

namespace Integration.Host.Tests.Catalog;

/// <summary>
/// The catalog read path under the deadline budgets of the design (client 30 s &gt; gateway 25 s &gt; service 20 s &gt;
/// database 15 s): each hop's timeout is what is left, capped by its budget (answered in <c>Integration-Deadline-Budget</c>);
/// a request past its deadline is answered 504 at once without a query, a malformed deadline 400.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class CatalogDeadline_Specs
{
    IntegrationTestHost<Program> _host = null!;

    [OneTimeSetUp]
    public async Task StartHost() => _host = await TestHost.StartAsync("catalogdl");

    [OneTimeTearDown]
    public async Task StopHost() => await _host.DisposeAsync();

    /// <summary>Counts this host's catalog queries (<c>integration.catalog.queries</c>) by their <c>query</c> tag.</summary>
    sealed class Queries : IDisposable
    {
        readonly MeterListener _listener = new();
        readonly ConcurrentQueue<string> _seen = new();

        public Queries(IServiceProvider services)
        {
            var meters = services.GetRequiredService<IMeterFactory>();
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == CatalogReads.MeterName && instrument.Name == "integration.catalog.queries" && ReferenceEquals(instrument.Meter.Scope, meters))
                    listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
            {
                foreach (var tag in tags)
                {
                    if (tag.Key == "query")
                        _seen.Enqueue(tag.Value as string ?? "");
                }
            });
            _listener.Start();
        }

        public IReadOnlyList<string> Seen => [.. _seen];

        public void Dispose() => _listener.Dispose();
    }

    sealed record Answer(HttpStatusCode Status, string? Cache, string? Budget, JsonElement Body)
    {
        /// <summary>The budget header as hop → milliseconds.</summary>
        public Dictionary<string, long> Hops => (Budget ?? "").Split("; ", StringSplitOptions.RemoveEmptyEntries)
            .Select(h => h.Split('='))
            .ToDictionary(h => h[0], h => long.Parse(h[1].TrimEnd('m', 's'), System.Globalization.CultureInfo.InvariantCulture));
    }

    async Task<Answer> Get(string path, string? deadline = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(path, UriKind.Relative));
        if (deadline is not null)
            request.Headers.TryAddWithoutValidation(MessageDeadline.Header, deadline);
        using var response = await _host.Client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        static string? One(HttpResponseMessage r, string name) => r.Headers.TryGetValues(name, out var values) ? values.Single() : null;
        return new Answer(response.StatusCode, One(response, "X-Cache"), One(response, CatalogReads.BudgetHeader),
            text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    [Test]
    public async Task When_no_deadline_is_given_should_answer_200_within_the_full_budgets_and_keep_X_Cache()
    {
        var first = await Get("/api/parts/PUMP-1");
        var second = await Get("/api/parts/PUMP-1");

        Assert.Multiple(() =>
        {
            Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(first.Cache, Is.EqualTo("miss"));
            Assert.That(first.Body.GetProperty("sku").GetString(), Is.EqualTo("PUMP-1"));
            // Client 30 s from now: the gateway gets its 25 s, the service 20 s, the database 15 s.
            Assert.That(first.Budget, Is.EqualTo("gateway=25000ms; service=20000ms; database=15000ms"));
            Assert.That(second.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(second.Cache, Is.EqualTo("hit"));
            Assert.That(second.Budget, Is.EqualTo("gateway=25000ms; service=20000ms"), "a hit takes no database hop");
        });
    }

    [Test]
    public async Task When_the_deadline_is_shorter_than_the_budgets_should_shrink_every_hop_to_what_is_left()
    {
        var supplier = "short-" + Guid.NewGuid().ToString("N")[..8];
        var part = await Get("/api/parts/VALVE-2", MessageDeadline.After(TimeSpan.FromSeconds(3)).ToString());
        var list = await Get($"/api/parts?supplier={supplier}", MessageDeadline.After(TimeSpan.FromSeconds(3)).ToString());

        foreach (var answer in new[] { part, list })
        {
            var hops = answer.Hops;
            Assert.Multiple(() =>
            {
                Assert.That(answer.Status, Is.EqualTo(HttpStatusCode.OK));
                Assert.That(answer.Cache, Is.EqualTo("miss"));
                Assert.That(hops.Keys, Is.EqualTo(new[] { "gateway", "service", "database" }));
                Assert.That(hops["gateway"], Is.InRange(1, 3000), "the gateway waits what is left, not its 25 s");
                Assert.That(hops["service"], Is.InRange(1, hops["gateway"]));
                Assert.That(hops["database"], Is.InRange(1, hops["service"]));
            });
        }
    }

    [Test]
    public async Task When_the_deadline_has_passed_should_answer_504_at_once_with_the_reason_and_not_query_the_database()
    {
        using var queries = new Queries(_host.Services);
        var late = await Get("/api/parts/FILTER-5", MessageDeadline.After(TimeSpan.FromMinutes(-1)).ToString());
        var afterLate = queries.Seen;
        var fresh = await Get("/api/parts/FILTER-5");

        Assert.Multiple(() =>
        {
            Assert.That(late.Status, Is.EqualTo(HttpStatusCode.GatewayTimeout));
            Assert.That(late.Body.GetProperty("error").GetString(), Is.EqualTo("deadline-exceeded"));
            Assert.That(late.Body.GetProperty("reason").GetString(), Does.Contain("passed").And.Contain("not started"));
            Assert.That(late.Cache, Is.Null, "the cache was not read");
            Assert.That(afterLate, Is.Empty, "no database query for a request past its deadline");
            Assert.That(fresh.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(fresh.Cache, Is.EqualTo("miss"), "the late request cached nothing");
            Assert.That(queries.Seen, Is.EqualTo(new[] { "part" }), "the counter sees the query of a request in time");
        });
    }

    [Test]
    public async Task When_a_listed_read_has_passed_its_deadline_should_answer_504_too()
    {
        var late = await Get("/api/parts?category=general", MessageDeadline.After(TimeSpan.FromSeconds(-5)).ToString());

        Assert.Multiple(() =>
        {
            Assert.That(late.Status, Is.EqualTo(HttpStatusCode.GatewayTimeout));
            Assert.That(late.Body.GetProperty("error").GetString(), Is.EqualTo("deadline-exceeded"));
            Assert.That(late.Body.GetProperty("deadline").GetString(), Is.Not.Empty);
        });
    }

    [Test]
    public async Task When_the_deadline_is_malformed_should_answer_400_with_the_reason()
    {
        var part = await Get("/api/parts/SENSOR-3", "tomorrow-ish");
        var list = await Get("/api/parts", "tomorrow-ish");

        foreach (var answer in new[] { part, list })
        {
            Assert.Multiple(() =>
            {
                Assert.That(answer.Status, Is.EqualTo(HttpStatusCode.BadRequest));
                Assert.That(answer.Body.GetProperty("error").GetString(), Is.EqualTo("malformed-deadline"));
                Assert.That(answer.Body.GetProperty("reason").GetString(),
                    Is.EqualTo("The Integration-Deadline header 'tomorrow-ish' is not an ISO-8601 UTC time (e.g. 2026-12-01T16:10:00Z)"));
            });
        }
    }
}
