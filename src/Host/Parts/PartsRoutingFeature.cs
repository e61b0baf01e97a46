using Integration.Host.Features;
using Integration.Hosting;
using Integration.Patterns.Compression;
using Integration.Patterns.Deadlines;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Filtering;
using Integration.Patterns.Routing;
using Integration.Patterns.WireTap;
using MassTransit;
using Microsoft.Extensions.Options;

namespace Integration.Host.Parts;

/// <summary>A parts request as devices send it: plain JSON from any AMQP client, no MassTransit envelope.</summary>
public sealed record PartsRequest(string? RequestId, string? DeviceId, string? Category, string? Sku, int Quantity);

/// <summary>
/// The sample routes (a contract: the queue names are fixed). <c>parts-requests</c> receives raw JSON; every request is
/// wire-tapped to <c>audit</c>; a request without <c>requestId</c> goes to <c>parts-requests_error</c>; test devices go
/// to <c>parts-requests-discarded</c>; the rest is routed by category to <c>parts-electronics</c>,
/// <c>parts-hydraulics</c> or <c>parts-general</c>, keeping its body and carrying a message history header.
/// </summary>
public sealed partial class PartsRoutingFeature : IHostFeature
{
    /// <summary>The queues the routes send to: they stand for downstream systems, so the host declares them but does not consume them.</summary>
    public static readonly string[] Destinations = ["audit", "parts-requests-discarded", "parts-electronics", "parts-hydraulics", "parts-general"];

    /// <summary>Largest parts request accepted (64 KiB); larger ones go to <c>parts-requests_error</c> with the reason.</summary>
    public const int MaxRequestBytes = 64 * 1024;

    /// <summary>
    /// Largest size a compressed parts request (content encoding <c>gzip</c>, <c>br</c>, <c>lz4</c> or <c>snappy</c>) may
    /// inflate to (1 MiB): past it, the request goes to <c>parts-requests_error</c> with the reason.
    /// <c>Integration:Parts:MaxDecompressedBytes</c>.
    /// </summary>
    public const int DefaultMaxDecompressedBytes = 1024 * 1024;

    /// <summary>
    /// Configuration section of the deadline budgets (<c>Integration:Deadlines:Client</c>, <c>:Gateway</c>,
    /// <c>:Service</c>, <c>:Database</c>). A parts request works under its <c>Integration-Deadline</c> header or the
    /// gateway budget from its arrival, whichever is sooner; one whose deadline has passed goes to
    /// <c>parts-requests_skipped</c> with the reason, and what is routed carries the deadline on.
    /// </summary>
    public const string DeadlinesSection = "Integration:Deadlines";

    /// <inheritdoc />
    public string Name => "parts-routing";

    /// <inheritdoc />
    public void AddServices(IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddHostedService<DestinationQueues>();
        // The read path's budgets (client 30 s > gateway 25 s > service 20 s > database 15 s): validated at start, naming the key.
        builder.Services.AddOptions<DeadlineBudgets>().BindConfiguration(DeadlinesSection).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<DeadlineBudgets>, DeadlineBudgetsValidation>();
    }

    /// <summary>Default rate limit of <c>parts-requests</c> (messages per second); <c>Integration:Parts:RateLimitPerSecond</c>, changed at run time by the control bus.</summary>
    public const int DefaultRateLimitPerSecond = 1000;

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var perSecond = configuration.GetValue("Integration:Parts:RateLimitPerSecond", DefaultRateLimitPerSecond);
        var maxDecompressed = configuration.GetValue("Integration:Parts:MaxDecompressedBytes", DefaultMaxDecompressedBytes);
        var budgets = configuration.GetSection(DeadlinesSection).Get<DeadlineBudgets>() ?? new DeadlineBudgets();
        bus.AddIntegrationRoutes(routes => routes.From<PartsRequest>("parts-requests", r => r
                .WireTap("audit")
                .Validate(m => !string.IsNullOrWhiteSpace(m.RequestId), "requestId is required")
                .Filter(m => !(m.DeviceId ?? "").StartsWith("test-", StringComparison.Ordinal), otherwise: "parts-requests-discarded")
                .Route(c => c
                    .ByKey(m => m.Category)
                    .WhenKey("electronics", "parts-electronics")
                    .WhenKey("hydraulics", "parts-hydraulics")
                    .Otherwise("parts-general"), name: "by-category"),
            endpoint =>
            {
                endpoint.RawJson = true;
                endpoint.MaxBodyBytes = MaxRequestBytes;
                // Compressed requests are read and routed like plain ones (passed on decompressed); a bad value stops the host naming the setting.
                endpoint.Compression = new CompressionOptions { MaxDecompressedBytes = maxDecompressed };
                endpoint.Deadline = budgets.Gateway;
                endpoint.RateLimit(perSecond, TimeSpan.FromSeconds(1));   // a bad value stops the host naming the route and RateLimit
            }));
    }

    /// <summary>Fails the start when the budgets are not positive or do not shrink hop by hop.</summary>
    sealed class DeadlineBudgetsValidation : IValidateOptions<DeadlineBudgets>
    {
        public ValidateOptionsResult Validate(string? name, DeadlineBudgets options)
        {
            var failures = options.Validate(DeadlinesSection).ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }

    /// <summary>Declares the destination queues (durable) as soon as the broker answers, retrying in the background until it does.</summary>
    sealed partial class DestinationQueues(IOptions<RabbitMqOptions> options, ILogger<DestinationQueues> logger) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            for (var attempt = 1; !stoppingToken.IsCancellationRequested; attempt++)
            {
                try
                {
                    await using var connection = await RabbitMqConnections.ConnectAsync(options.Value, "parts-destinations", stoppingToken).ConfigureAwait(false);
                    await using var channel = await connection.CreateChannelAsync(cancellationToken: stoppingToken).ConfigureAwait(false);
                    foreach (var queue in Destinations)
                        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments: options.Value.DurableQueueArguments(), cancellationToken: stoppingToken).ConfigureAwait(false);
                    LogDeclared(logger, string.Join(", ", Destinations));
                    return;
                }
                catch (Exception exception) when (exception is not OperationCanceledException)
                {
                    LogRetry(logger, attempt, exception.Message);
                    await Task.Delay(TimeSpan.FromSeconds(Math.Min(30, attempt * 2)), stoppingToken).ConfigureAwait(false);
                }
            }
        }

        [LoggerMessage(Level = LogLevel.Information, Message = "Declared destination queues: {Queues}")]
        static partial void LogDeclared(ILogger logger, string queues);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Could not declare destination queues yet (attempt {Attempt}): {Reason}")]
        static partial void LogRetry(ILogger logger, int attempt, string reason);
    }
}
