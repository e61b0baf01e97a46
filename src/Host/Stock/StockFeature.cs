using Integration.Host.Features;
using Integration.Patterns.SmartProxy;
using MassTransit;

namespace Integration.Host.Stock;

/// <summary>Asks the stock service how many of a part are available.</summary>
public sealed record StockLevelQuery(string Sku);

/// <summary>The stock service's answer.</summary>
public sealed record StockLevel(string Sku, int Available, DateTimeOffset At);

/// <summary>Settings of the stock sample, bound from <c>Integration:Stock</c>.</summary>
public sealed class StockOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Stock";

    /// <summary>The smart proxy's timeout, retries and circuit breaker.</summary>
    public SmartProxyOptions Proxy { get; set; } = new() { Name = "stock-levels" };
}

/// <summary>
/// Smart proxy sample: <c>GET /api/stock/{sku}</c> asks the stock service (a consumer of queue <c>stock-levels</c>)
/// through the bus with a <see cref="SmartProxy"/>: correlated reply, timeout, retries, circuit breaker, and its
/// pending requests visible at <c>GET /api/control/proxies</c>. A 503 says the circuit is open or the service did not answer.
/// </summary>
public sealed class StockFeature : IHostFeature
{
    /// <summary>Queue of the stock service.</summary>
    public const string Queue = "stock-levels";

    /// <inheritdoc />
    public string Name => "stock";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<StockOptions>().BindConfiguration(StockOptions.Section)
            .Validate(o => !o.Proxy.Validate().Any(), "Integration:Stock:Proxy is invalid (Timeout, OpenDuration positive; Retries >= 0; FailureThreshold >= 1)").ValidateOnStart();
        builder.Services.AddIntegrationSmartProxies();
        builder.Services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<StockOptions>>().Value.Proxy;
            // With quorum queues, the exchange MassTransit binds to the endpoint's queue: sending to queue: would re-declare it without arguments.
            var scheme = sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<Integration.Hosting.RabbitMqOptions>>().Value.QueueType == Integration.Hosting.RabbitMqQueueType.Quorum ? "exchange" : "queue";
            return sp.GetRequiredService<SmartProxyRegistry>().Create(new Uri($"{scheme}:{Queue}"), options);
        });
    }

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.AddConsumer<StockLevelConsumer>().Endpoint(e => e.Name = Queue);
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        // Created now, not at the first request: the control bus and the dashboard list it (closed circuit, nothing
        // pending) from the start.
        _ = endpoints.ServiceProvider.GetRequiredService<SmartProxy>();
        endpoints.MapGet("/api/stock/{sku}", async (string sku, SmartProxy proxy, CancellationToken cancellationToken) =>
        {
            try
            {
                var level = await proxy.RequestAsync<StockLevelQuery, StockLevel>(new StockLevelQuery(sku), cancellationToken).ConfigureAwait(false);
                return Results.Ok(level);
            }
            catch (SmartProxyCircuitOpenException exception)
            {
                return Results.Problem(exception.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Circuit open");
            }
            catch (RequestTimeoutException exception)
            {
                return Results.Problem(exception.Message, statusCode: StatusCodes.Status503ServiceUnavailable, title: "Stock service did not answer");
            }
        });
    }
}

/// <summary>The simulated stock service: a level computed from the SKU, so answers are stable.</summary>
public sealed class StockLevelConsumer : IConsumer<StockLevelQuery>
{
    /// <inheritdoc />
    public Task Consume(ConsumeContext<StockLevelQuery> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var sku = context.Message.Sku ?? "";
        var available = (sku.Aggregate(17, (hash, c) => unchecked((hash * 31) + c)) & 0x7fffffff) % 500;
        return context.RespondAsync(new StockLevel(sku, sku.Length == 0 ? 0 : available, DateTimeOffset.UtcNow));
    }
}
