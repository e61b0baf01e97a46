using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Endpoints;
using Integration.Patterns.Filtering;
using Integration.Patterns.RecipientList;
using Integration.Patterns.Routing;
using Integration.Testing;
using NUnit.Framework;

namespace Integration.Patterns.Tests;

/// <summary>
/// Property (FsCheck): for a random route (up to three filter / validate steps, then a content router, a single
/// destination or a recipient list, with random thresholds) and random orders, on the real broker, every order put into
/// the route ends where the route's definition says — each destination it is due at exactly once (a recipient list:
/// each of its recipients once), or the route's <c>_error</c> queue once — and nowhere else: nothing lost, nothing
/// duplicated. Few cases (each starts a bus on a virtual host of its own) so the spec stays fast.
/// </summary>
[TestFixture]
[Category("Integration")]
public sealed class RouteProperty_Specs
{
    const string Input = "prop-orders";
    const string Error = Input + "_error";
    static readonly string[] Destinations = ["prop-discarded-0", "prop-discarded-1", "prop-discarded-2", "prop-big", "prop-priority", "prop-other", "prop-accepted", "prop-billing", "prop-audit"];
    static readonly string[] Kinds = ["priority", "PRIORITY", "standard", "", "x"];

    /// <summary>A step before the end of the route: a filter (amount above the threshold passes, else its discard queue) or a validation (amount not a multiple of the divisor, else a fault).</summary>
    public sealed record Step(bool IsFilter, int Value);

    /// <summary>A route: steps, then its end (0 content router, 1 one destination, 2 recipient list) with a threshold.</summary>
    public sealed record Shape(IReadOnlyList<Step> Steps, int End, int Threshold)
    {
        public override string ToString() =>
            $"[{string.Join(", ", Steps.Select(s => s.IsFilter ? $"Filter(amount > {s.Value})" : $"Validate(amount % {s.Value} != 0)"))}] then " +
            (End switch { 0 => $"Route(amount > {Threshold} big, key priority, otherwise other)", 1 => "To(accepted)", _ => $"RecipientList(billing, amount > {Threshold}: audit)" });
    }

    /// <summary>One property case: the route and the orders sent into it.</summary>
    public sealed record Case(Shape Shape, IReadOnlyList<Order> Orders)
    {
        public override string ToString() => $"{Shape}; orders: {string.Join(" ", Orders.Select(o => $"{o.Id}:{o.Kind}/{o.Amount}"))}";
    }

    static Gen<Case> Cases()
    {
        var step = from isFilter in Gen.Elements(true, false)
                   from value in isFilter ? Gen.Choose(-5, 60) : Gen.Choose(2, 7)
                   select new Step(isFilter, value);
        var shape = from count in Gen.Choose(0, 3)
                    from steps in Gen.ArrayOf(step, count)
                    from end in Gen.Choose(0, 2)
                    from threshold in Gen.Choose(0, 100)
                    select new Shape(steps, end, threshold);
        var order = from kind in Gen.Elements(Kinds)
                    from amount in Gen.Choose(-10, 120)
                    select (kind, amount);
        return from s in shape
               from n in Gen.Choose(1, 12)
               from orders in Gen.ArrayOf(order, n)
               select new Case(s, orders.Select((o, i) => new Order($"o{i}", o.kind, o.amount)).ToArray());
    }

    /// <summary>Where the route sends <paramref name="order"/>: its destination queues, or the error queue.</summary>
    static IReadOnlyList<string> Expected(Shape shape, Order order)
    {
        for (var i = 0; i < shape.Steps.Count; i++)
        {
            var step = shape.Steps[i];
            if (step.IsFilter && !(order.Amount > step.Value))
                return [$"prop-discarded-{i}"];
            if (!step.IsFilter && order.Amount % step.Value == 0)
                return [Error];
        }

        return shape.End switch
        {
            0 when order.Amount > shape.Threshold => ["prop-big"],
            0 when string.Equals(order.Kind, "priority", StringComparison.OrdinalIgnoreCase) => ["prop-priority"],
            0 => ["prop-other"],
            1 => ["prop-accepted"],
            _ => order.Amount > shape.Threshold ? ["prop-billing", "prop-audit"] : ["prop-billing"],
        };
    }

    static Action<IRouteBuilder> Routes(Shape shape) => routes => routes.From<Order>(Input, r =>
    {
        var route = r;
        for (var i = 0; i < shape.Steps.Count; i++)
        {
            var step = shape.Steps[i];
            route = step.IsFilter
                ? route.Filter(o => o.Amount > step.Value, otherwise: $"prop-discarded-{i}")
                : route.Validate(o => o.Amount % step.Value != 0, $"amount is a multiple of {step.Value}");
        }

        _ = shape.End switch
        {
            0 => route.Route(c => c.When(o => o.Amount > shape.Threshold, "prop-big").ByKey(o => o.Kind).WhenKey("priority", "prop-priority").Otherwise("prop-other")),
            1 => route.To("prop-accepted"),
            _ => route.RecipientList(o => o.Amount > shape.Threshold ? ["prop-billing", "prop-audit"] : ["prop-billing"]),
        };
    });

    [Test]
    public void Every_message_put_into_a_route_should_end_in_exactly_the_places_its_definition_names()
    {
        var property = Prop.ForAll(Arb.From(Cases()), c => Holds(c).GetAwaiter().GetResult());
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(20).WithQuietOnSuccess(true), property);
    }

    static async Task<bool> Holds(Case c)
    {
        await using var harness = await RouteHarness<Order>.StartAsync(new RabbitMq(), Routes(c.Shape), Destinations);
        var rabbit = (RabbitMq)harness.Transport;
        foreach (var order in c.Orders)
            await harness.Send(Input, order);

        var expected = c.Orders.SelectMany(o => Expected(c.Shape, o).Select(q => (Queue: q, o.Id))).ToList();
        var delivered = expected.Count(e => e.Queue != Error);
        var faulted = expected.Count(e => e.Queue == Error);

        // Wait for the observed facts: the route consumed every order, the destinations hold what is due, the error queue its count.
        await Eventually.TrueAsync(() => Task.FromResult(
            harness.Harness.Consumed.Select<Order>(x => x.Context.DestinationAddress?.AbsolutePath.EndsWith(Input, StringComparison.Ordinal) == true).Count() >= c.Orders.Count
            && Destinations.Sum(d => harness.At(d).Count) >= delivered), TimeSpan.FromSeconds(20));
        if (faulted > 0)
            Assert.That(await harness.QueueHolds(Error, faulted, 20), Is.True, $"{Error} should hold {faulted}: {c}");
        else
            Assert.That(await rabbit.Broker.QueueMessageCountAsync(Error) ?? 0, Is.Zero, $"{Error} should be empty (or not exist): {c}");

        var errors = new List<string>();
        for (var i = 0; i < faulted; i++)
        {
            var raw = await rabbit.TakeRawAsync(Error) ?? throw new AssertionException($"{Error} lost a message: {c}");
            using var envelope = JsonDocument.Parse(raw.Body);
            errors.Add(envelope.RootElement.GetProperty("message").GetProperty("id").GetString()!);
        }

        var actual = Destinations.SelectMany(d => harness.At(d).Select(m => (Queue: d, m.Message.Id))).Concat(errors.Select(id => (Queue: Error, Id: id)));
        Assert.That(actual.Order(), Is.EqualTo(expected.Order()), $"every order exactly where the route sends it, once: {c}");
        Assert.That(await rabbit.Broker.QueueMessageCountAsync(Input), Is.Zero, "nothing left on the route's queue");
        return true;
    }
}
