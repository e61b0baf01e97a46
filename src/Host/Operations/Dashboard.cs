using Integration.Patterns.SmartProxy;

namespace Integration.Host.Operations;

/// <summary>
/// The operations dashboard at <c>/dashboard</c>: one self-contained page (inline script and style, nothing from the
/// network) that reads the control bus with the key the operator types in, and the <c>overview</c> command it reads.
/// </summary>
public static class Dashboard
{
    static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(Dashboard).Assembly.GetManifestResourceStream("Integration.Host.Operations.dashboard.html")
            ?? throw new InvalidOperationException("The dashboard page is not embedded in the host assembly");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    /// <summary>Registers <c>overview</c> (Viewer), <c>proxies.list</c> (Viewer) and <c>proxy.reset</c> (Operator).</summary>
    public static IServiceCollection AddDashboardCommands(this IServiceCollection services)
    {
        services.AddSingleton<OperationsOverview>();
        services.AddHostedService(sp => sp.GetRequiredService<OperationsOverview>());

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("overview", ControlRole.Viewer, async (command, ct) =>
        {
            var snapshot = await sp.GetRequiredService<OperationsOverview>().MeasureAsync(ct).ConfigureAwait(false);
            var take = int.TryParse(command.Argument("take"), out var n) ? n : 40;
            var recent = await sp.GetRequiredService<MessageStore>().FindAsync(new MessageQuery(null, null, null, null, null, take), ct).ConfigureAwait(false);
            return ControlResult.Ok("Queues with rates, dead letters, outbox backlog, saga instances by state, probes, smart proxies and recent journeys", new
            {
                at = snapshot.At,
                queues = snapshot.Queues,
                deadLetters = snapshot.DeadLetters,
                outboxBacklog = snapshot.OutboxBacklog,
                sagas = snapshot.Sagas,
                storedMessages = snapshot.StoredMessages,
                probes = sp.GetRequiredService<ProbeMonitor>().Results,
                proxies = Proxies(sp),
                journeys = MessageStoreCommands.Journeys(recent),
                errors = snapshot.Errors,
            });
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("proxies.list", ControlRole.Viewer, (_, _) =>
            Task.FromResult(ControlResult.Ok("Smart proxies with their circuit state and pending requests", Proxies(sp)))));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("proxy.reset", ControlRole.Operator, (command, _) =>
        {
            var proxy = sp.GetService<SmartProxyRegistry>()?.Find(command.Target ?? "");
            if (proxy is null)
                return Task.FromResult(new ControlResult(ControlOutcome.NotFound, $"No smart proxy '{command.Target}'"));
            proxy.Reset();
            return Task.FromResult(ControlResult.Ok($"Smart proxy '{proxy.Name}': circuit closed"));
        }));
        return services;
    }

    static object Proxies(IServiceProvider sp) => (sp.GetService<SmartProxyRegistry>()?.All ?? []).Select(p => new { name = p.Name, destination = p.Destination.ToString(), circuit = p.State.ToString(), pending = p.Pending }).ToList();

    /// <summary>Maps <c>/dashboard</c> and the commands it reads.</summary>
    public static IEndpointRouteBuilder MapDashboard(this IEndpointRouteBuilder endpoints, RouteGroupBuilder control)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(control);
        endpoints.MapGet("/dashboard", (HttpContext http) =>
        {
            // The page holds no data; everything it shows comes from the control bus, with the operator's key.
            http.Response.Headers.ContentSecurityPolicy = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:";
            http.Response.Headers.CacheControl = "no-store";
            return Results.Bytes(Page.Value, "text/html; charset=utf-8");
        }).ExcludeFromDescription();
        control.MapGet("/overview", (HttpContext http, ControlBus bus, ControlAuthorization auth, int? take) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("overview", Arguments: MessageStoreCommands.Args(("take", take?.ToString(System.Globalization.CultureInfo.InvariantCulture))))));
        control.MapGet("/proxies", (HttpContext http, ControlBus bus, ControlAuthorization auth) => ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("proxies.list")));
        control.MapPost("/proxies/{name}/reset", (HttpContext http, ControlBus bus, ControlAuthorization auth, string name) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("proxy.reset", name)));
        return endpoints;
    }
}
