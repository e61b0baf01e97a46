using System.Text.Json;
using System.Text.RegularExpressions;
using Integration.Hosting;
using Integration.Patterns.Routing;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Integration.Operations;

/// <summary><c>permissions.show</c> (Viewer): the RabbitMQ permissions (configure, write, read patterns) this host needs on its virtual host.</summary>
public sealed record ShowPermissions;

/// <summary>
/// What this host needs of the broker, per virtual host: the exact exchanges and queues it declares, sends to and reads
/// from, and the RabbitMQ permission patterns (anchored alternations of those names) that allow exactly them.
/// </summary>
/// <param name="VirtualHost">The virtual host.</param>
/// <param name="Configure">Regex for <c>configure</c> (declare, delete).</param>
/// <param name="Write">Regex for <c>write</c> (publish to an exchange, bind to a queue or exchange).</param>
/// <param name="Read">Regex for <c>read</c> (consume or get from a queue, bind from an exchange).</param>
/// <param name="Exchanges">The exchanges, by name.</param>
/// <param name="Queues">The queues, by name.</param>
/// <param name="Prefixes">Name prefixes allowed besides (message-type exchanges of the host's namespaces, published lazily; per-instance queues).</param>
public sealed record BrokerPermissionSet(string VirtualHost, string Configure, string Write, string Read, IReadOnlyList<string> Exchanges, IReadOnlyList<string> Queues,
    IReadOnlyList<string> Prefixes)
{
    /// <summary>The <c>rabbitmqctl set_permissions</c> call that grants them (to the user named <c>USER</c>).</summary>
    public string RabbitMqCtl => $"rabbitmqctl set_permissions -p '{VirtualHost}' USER '{Configure}' '{Write}' '{Read}'";
}

/// <summary>
/// Computes <see cref="BrokerPermissionSet"/> from what the framework knows once the bus runs: every receive endpoint (its
/// queue, the exchange of the same name, its <c>_error</c> and <c>_skipped</c> queues and exchanges), every exchange and
/// binding of the bus topology (its probe), every destination of an integration route (routing tables, wire taps,
/// filters), the message store's queue and exchanges, the probes' queues; message-type exchanges (<c>Namespace:Type</c>)
/// are allowed by namespace, since MassTransit declares the exchange of a published type on first publish.
/// </summary>
sealed class BrokerPermissions(IServiceProvider services, ReceiveEndpointRegistry endpoints, IOptions<RabbitMqOptions> rabbit,
    IOptions<MessageStoreOptions> store, IOptions<ProbeOptions> probes) : IControlHandler<ShowPermissions>
{
    static readonly Regex EntityName = new("^[A-Za-z0-9_.:\\-]{1,255}$", RegexOptions.CultureInvariant);
    static readonly string[] NameKeys = ["name", "source", "destination", "exchange", "queue", "exchangeName", "queueName"];

    public Task<ControlResult> HandleAsync(ShowPermissions command, CancellationToken cancellationToken) =>
        Task.FromResult(ControlResult.Ok($"RabbitMQ permissions this host needs on virtual host '{rabbit.Value.VirtualHost}'", Compute()));

    /// <summary>The permission set for the running bus.</summary>
    public BrokerPermissionSet Compute()
    {
        var queues = new SortedSet<string>(StringComparer.Ordinal);
        var exchanges = new SortedSet<string>(StringComparer.Ordinal);
        var prefixes = new SortedSet<string>(StringComparer.Ordinal);

        void Endpoint(string queue)
        {
            foreach (var name in new[] { queue, $"{queue}_error", $"{queue}_skipped" })
            {
                queues.Add(name);
                exchanges.Add(name);
            }
        }

        foreach (var endpoint in endpoints.All)
            Endpoint(endpoint.Name);

        // The bus topology as MassTransit probes it: exchanges, queues and bindings of every receive endpoint.
        var probe = services.GetRequiredService<IBus>().GetProbeResult();
        Walk(JsonSerializer.SerializeToElement(probe.Results), null, exchanges, queues);

        // Integration routes: every destination a route step names (routing tables, wire taps, filters' otherwise).
        if (services.GetService<RouteControl>() is { } routes)
        {
            foreach (var route in routes.Routes)
                Endpoint(route.Name);
            foreach (var destination in RouteDestinations(routes))
            {
                queues.Add(destination);
                exchanges.Add(destination);
            }
        }

        if (store.Value.Enabled)
        {
            queues.Add(store.Value.Queue);
            foreach (var exchange in store.Value.Exchanges)
                exchanges.Add(exchange);
        }

        if (probes.Value.Enabled)
        {
            foreach (var route in probes.Value.Routes)
            {
                queues.Add(route.Queue);
                queues.Add(route.ExpectOn);
            }
        }

        // Message-type exchanges (Namespace:Type): by namespace, so a type first published later is covered.
        var namespaces = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var exchange in exchanges.Where(e => e.Contains(':', StringComparison.Ordinal)).ToList())
        {
            namespaces.Add(exchange[..(exchange.IndexOf(':', StringComparison.Ordinal) + 1)]);
            exchanges.Remove(exchange);
        }

        prefixes.UnionWith(namespaces);

        // Per-instance control queues end in a random instance id; the rest is exact.
        foreach (var endpoint in endpoints.All.Where(e => PerInstancePrefix(e.Name) is not null))
        {
            prefixes.Add(PerInstancePrefix(endpoint.Name)!);
            foreach (var name in new[] { endpoint.Name, $"{endpoint.Name}_error", $"{endpoint.Name}_skipped" })
            {
                queues.Remove(name);
                exchanges.Remove(name);
            }
        }

        queues.RemoveWhere(q => q.Length == 0 || q.StartsWith("amq.", StringComparison.Ordinal));
        exchanges.RemoveWhere(e => e.Length == 0 || e.StartsWith("amq.", StringComparison.Ordinal));

        var names = queues.Union(exchanges, StringComparer.Ordinal).OrderBy(n => n, StringComparer.Ordinal).ToList();
        var exact = string.Join('|', names.Select(Regex.Escape));
        var prefixed = string.Join('|', prefixes.Select(p => Regex.Escape(p) + "[^:]+"));
        // MassTransit publishes Fault<T> (exchange MassTransit:Fault--Namespace:Type--) when a consumer of T fails, on the
        // channel the message came in on: refused there, the channel closes and the message can never reach its _error queue.
        // The fault exchange is bound to MassTransit:Fault (the Fault interface), so both are declared, bound and written.
        var faults = namespaces.Count == 0 ? ""
            : string.Join('|', namespaces.Select(n => Regex.Escape("MassTransit:Fault--" + n) + "[^:]+--").Prepend(Regex.Escape("MassTransit:Fault")));
        var all = string.Join('|', new[] { exact, prefixed, faults }.Where(s => s.Length > 0));
        // Server-named queues (amq.gen-*) are declared by RabbitMQ.Client for temporary consumers; direct sends to a queue go through the default exchange.
        var configure = $"^({all}|amq\\.gen-.*)$";
        var write = $"^({all}|amq\\.gen-.*|amq\\.default)$";
        var read = $"^({all}|amq\\.gen-.*)$";
        return new BrokerPermissionSet(rabbit.Value.VirtualHost, configure, write, read, exchanges.ToList(), queues.ToList(), prefixes.ToList());
    }

    /// <summary>
    /// The fixed part of a per-instance queue name: the framework's per-host queues, named <c>{prefix}-{8 hex}</c> (the
    /// control queue <c>control-bus-{service}-{8 hex}</c>, the device hub's <c>device-hub-{8 hex}</c>, the cache
    /// invalidation's <c>cache-invalidation-{8 hex}</c>), and the bus's own temporary endpoint
    /// (<c>{machine}_{process}_bus_{random}</c>); null for a name that is the same on every instance.
    /// </summary>
    static string? PerInstancePrefix(string name)
    {
        var bus = name.IndexOf("_bus_", StringComparison.Ordinal);
        if (bus > 0)
            return name[..(bus + "_bus_".Length)];
        var dash = name.LastIndexOf('-');
        return dash > 0 && name.Length - dash - 1 == 8 && name[(dash + 1)..].All(Uri.IsHexDigit)
            ? name[..(dash + 1)]
            : null;
    }

    static IEnumerable<string> RouteDestinations(RouteControl routes)
    {
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var table in routes.RoutingTables)
            Strings(JsonSerializer.SerializeToElement(table.Describe()), found);
        foreach (var step in routes.Routes.SelectMany(r => r.Steps))
        {
            // Step names carry their destination after the kind, e.g. "wire-tap:audit" or "filter otherwise parts-requests-discarded".
            foreach (var part in step.Name.Split([':', ' ', '→', '>', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (EntityName.IsMatch(part) && part.Contains('-', StringComparison.Ordinal))
                    found.Add(part);
            }
        }

        return found;
    }

    static void Strings(JsonElement element, ISet<string> into)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String when element.GetString() is { } text && EntityName.IsMatch(text):
                into.Add(text);
                break;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                    Strings(property.Value, into);
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                    Strings(item, into);
                break;
        }
    }

    /// <summary>Collects names under the probe's exchange / queue / binding nodes.</summary>
    static void Walk(JsonElement element, string? kind, ISet<string> exchanges, ISet<string> queues)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    var key = property.Name;
                    var childKind = key.Contains("binding", StringComparison.OrdinalIgnoreCase) ? "binding"
                        : key.Contains("exchange", StringComparison.OrdinalIgnoreCase) ? "exchange"
                        : key.Contains("queue", StringComparison.OrdinalIgnoreCase) ? "queue"
                        : kind;
                    if (property.Value.ValueKind == JsonValueKind.String && kind is not null && NameKeys.Contains(key, StringComparer.OrdinalIgnoreCase)
                        && property.Value.GetString() is { } name && EntityName.IsMatch(name))
                    {
                        (kind == "queue" ? queues : exchanges).Add(name);
                    }
                    else
                    {
                        Walk(property.Value, childKind, exchanges, queues);
                    }
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                    Walk(item, kind, exchanges, queues);
                break;
        }
    }
}
