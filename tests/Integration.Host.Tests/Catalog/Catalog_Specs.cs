using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integration.Host.Tests.Devices;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Host.Tests.Catalog;

/// <summary>
/// The parts catalog, cache-aside across two hosts of one service: reads are served through each host's HybridCache
/// (<c>X-Cache: hit|miss</c>); a part updated through host A is evicted on host B, with the lists that contain it.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class Catalog_Specs
{
    TwoHosts _hosts = null!;

    [OneTimeSetUp]
    public async Task StartHosts() => _hosts = await TwoHosts.StartAsync("catalog");

    [OneTimeTearDown]
    public async Task StopHosts() => await _hosts.DisposeAsync();

    static async Task<(HttpStatusCode Status, string? Cache, JsonElement Body)> Get(HttpClient client, string path)
    {
        using var response = await client.GetAsync(new Uri(path, UriKind.Relative));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, response.Headers.TryGetValues("X-Cache", out var values) ? values.Single() : null,
            text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    static async Task<HttpResponseMessage> Put(HttpClient client, string sku, object body) =>
        await client.PutAsJsonAsync(new Uri($"/api/parts/{sku}", UriKind.Relative), body);

    static decimal PriceIn(JsonElement list, string sku) =>
        list.EnumerateArray().Single(p => p.GetProperty("sku").GetString() == sku).GetProperty("price").GetDecimal();

    [Test]
    public async Task When_a_part_is_read_twice_should_miss_then_hit()
    {
        var first = await Get(_hosts.A.Client, "/api/parts/SENSOR-3");
        var second = await Get(_hosts.A.Client, "/api/parts/SENSOR-3");

        Assert.Multiple(() =>
        {
            Assert.That(first.Status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(first.Cache, Is.EqualTo("miss"));
            Assert.That(second.Cache, Is.EqualTo("hit"));
            Assert.That(second.Body.GetProperty("category").GetString(), Is.EqualTo("electronics"));
            Assert.That(second.Body.GetProperty("supplier").GetString(), Is.EqualTo("volt-supply"));
        });
    }

    [Test]
    public async Task When_the_parts_are_listed_by_category_and_supplier_should_filter_and_cache_the_list()
    {
        var first = await Get(_hosts.A.Client, "/api/parts?category=hydraulics&supplier=acme-hydraulics");
        // The next read is a hit; an earlier spec's update can still be evicting the lists (its PartUpdated arrives through
        // the broker), so read again until the cached list answers.
        var second = first;
        Assert.That(await Integration.Testing.Eventually.TrueAsync(async () =>
        {
            second = await Get(_hosts.A.Client, "/api/parts?category=hydraulics&supplier=acme-hydraulics");
            return second.Cache == "hit";
        }, TimeSpan.FromSeconds(10)), Is.True, "the list was never served from the cache");
        var all = await Get(_hosts.A.Client, "/api/parts");

        Assert.Multiple(() =>
        {
            Assert.That(first.Cache, Is.EqualTo("miss"));
            Assert.That(second.Cache, Is.EqualTo("hit"));
            Assert.That(second.Body.EnumerateArray().Select(p => p.GetProperty("sku").GetString()), Is.EquivalentTo(new[] { "PUMP-1", "VALVE-2" }));
            Assert.That(all.Body.GetArrayLength(), Is.GreaterThanOrEqualTo(5));
        });
    }

    [Test]
    public async Task When_a_part_cached_on_host_B_is_updated_through_host_A_should_be_evicted_on_host_B_with_its_lists()
    {
        // Host B caches the part and a list that contains it.
        await Get(_hosts.B.Client, "/api/parts/VALVE-2");
        await Get(_hosts.B.Client, "/api/parts?category=hydraulics");
        Assert.That((await Get(_hosts.B.Client, "/api/parts/VALVE-2")).Cache, Is.EqualTo("hit"));
        Assert.That((await Get(_hosts.B.Client, "/api/parts?category=hydraulics")).Cache, Is.EqualTo("hit"));

        using var put = await Put(_hosts.A.Client, "VALVE-2", new { name = "Check valve 3/8\"", category = "hydraulics", supplier = "acme-hydraulics", price = 41.25m });
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK), await put.Content.ReadAsStringAsync());
        await _hosts.A.Outbox.WaitUntilDeliveredAsync();

        // Host B's cached copies are evicted by PartUpdated on its own queue: the first read that sees the new price is a miss.
        (HttpStatusCode Status, string? Cache, JsonElement Body) part = default;
        var evicted = await Eventually.TrueAsync(async () =>
        {
            part = await Get(_hosts.B.Client, "/api/parts/VALVE-2");
            return part.Body.GetProperty("price").GetDecimal() == 41.25m;
        }, TimeSpan.FromSeconds(30));
        Assert.That(evicted, Is.True, "host B kept serving the old price");
        var list = await Get(_hosts.B.Client, "/api/parts?category=hydraulics");
        Assert.Multiple(() =>
        {
            Assert.That(part.Cache, Is.EqualTo("miss"));
            Assert.That(list.Cache, Is.EqualTo("miss"));
            Assert.That(PriceIn(list.Body, "VALVE-2"), Is.EqualTo(41.25m));
        });
    }

    [Test]
    public async Task When_a_part_is_updated_should_serve_the_new_part_from_the_updating_host_at_once()
    {
        await Get(_hosts.A.Client, "/api/parts/CABLE-4");

        using var put = await Put(_hosts.A.Client, "CABLE-4", new { name = "Sensor cable M12, 10 m", category = "electronics", supplier = "volt-supply", price = 19.90m });
        var after = await Get(_hosts.A.Client, "/api/parts/CABLE-4");

        Assert.Multiple(() =>
        {
            Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(after.Cache, Is.EqualTo("miss"));
            Assert.That(after.Body.GetProperty("name").GetString(), Is.EqualTo("Sensor cable M12, 10 m"));
        });
    }

    [Test]
    public async Task When_a_new_sku_is_put_should_create_it_and_list_it()
    {
        var sku = "NEW-" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        await Get(_hosts.B.Client, "/api/parts?supplier=newco");

        using var put = await Put(_hosts.A.Client, sku, new { name = "Gasket", category = "general", supplier = "newco", price = 1.5m });
        Assert.That(put.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        await _hosts.A.Outbox.WaitUntilDeliveredAsync();

        Assert.That(await Eventually.TrueAsync(async () => (await Get(_hosts.B.Client, "/api/parts?supplier=newco")).Body.GetArrayLength() == 1,
            TimeSpan.FromSeconds(30)), Is.True, "host B kept the cached empty list");
    }

    [Test]
    public async Task When_a_part_is_unknown_or_the_update_is_invalid_should_answer_404_and_400_with_the_fields()
    {
        var missing = await Get(_hosts.A.Client, "/api/parts/NO-SUCH-PART");
        using var invalid = await Put(_hosts.A.Client, "PUMP-1", new { name = "", category = "hydraulics", price = -1 });
        var problem = JsonDocument.Parse(await invalid.Content.ReadAsStringAsync()).RootElement.GetProperty("errors");

        Assert.Multiple(() =>
        {
            Assert.That(missing.Status, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(invalid.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(problem.EnumerateObject().Select(p => p.Name), Is.SupersetOf(new[] { "name", "supplier", "price" }));
        });
    }
}
