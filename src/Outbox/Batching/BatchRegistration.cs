using Integration.Outbox.Inbox;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Integration.Outbox.Batching;

/// <summary>Registers a batch endpoint: messages applied in batches, each in one transaction with the inbox and the outbox.</summary>
public static class BatchRegistrationExtensions
{
    /// <summary>The meter of the batch step's instruments.</summary>
    public const string MeterName = "Integration.Outbox.Batching";

    /// <summary>
    /// Adds a receive endpoint <paramref name="queue"/> whose <typeparamref name="TMessage"/> messages are applied by
    /// <typeparamref name="THandler"/> (scoped) in batches: up to <see cref="BatchingOptions.MessageLimit"/> collected within
    /// <see cref="BatchingOptions.TimeLimit"/>, applied in one database transaction on the DbContext of
    /// <c>AddIntegrationOutbox&lt;TDbContext&gt;</c> with an inbox record per message (a redelivered or duplicate message is
    /// applied once). A message is acknowledged only after the transaction that applied it committed. When a batch fails it
    /// is bisected until the failing message is alone: that one goes to <c>&lt;queue&gt;_error</c> with its reason, the
    /// rest commit. <see cref="BatchingOptions"/> are bound from <c>Integration:Batching:&lt;queue&gt;</c>, then
    /// <paramref name="configure"/> runs, then they are validated at start. <paramref name="endpoint"/> configures the
    /// receive endpoint further (a raw JSON deserializer, say). One batch endpoint per message type.
    /// </summary>
    public static IBusRegistrationConfigurator AddIntegrationBatch<TMessage, THandler>(this IBusRegistrationConfigurator bus, string queue,
        Action<BatchingOptions>? configure = null, Action<IReceiveEndpointConfigurator>? endpoint = null)
        where TMessage : class
        where THandler : class, IBatchHandler<TMessage>
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentException.ThrowIfNullOrWhiteSpace(queue);
        if (bus.Any(d => d.ServiceType == typeof(BatchEndpoint<TMessage>)))
            throw new InvalidOperationException($"AddIntegrationBatch<{typeof(TMessage).Name}>: a batch endpoint for {typeof(TMessage).Name} is already registered; one per message type");

        var options = bus.AddOptions<BatchingOptions>(queue).BindConfiguration($"{BatchingOptions.Section}:{queue}");
        if (configure is not null)
            options.Configure(configure);
        options.ValidateOnStart();
        bus.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BatchingOptions>, BatchOptionsValidator>());
        bus.AddMetrics();
        bus.TryAddSingleton(TimeProvider.System);
        bus.TryAddSingleton<BatchMetrics>();
        bus.AddSingleton(new BatchEndpoint<TMessage>(queue, endpoint));
        bus.AddSingleton(sp => new BatchCollector<TMessage>(queue, sp.GetRequiredService<IOptionsMonitor<BatchingOptions>>().Get(queue),
            sp.GetRequiredService<IServiceScopeFactory>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<BatchMetrics>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger($"Integration.Outbox.Batching.{queue}")));
        bus.AddScoped<IBatchHandler<TMessage>, THandler>();
        bus.AddConsumer<BatchConsumer<TMessage>, BatchConsumerDefinition<TMessage>>();
        return bus;
    }

    sealed class BatchOptionsValidator : IValidateOptions<BatchingOptions>
    {
        public ValidateOptionsResult Validate(string? name, BatchingOptions options)
        {
            var failures = options.Validate($"{BatchingOptions.Section}:{name}").ToList();
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}

/// <summary>The queue and endpoint configuration of one registered batch.</summary>
sealed record BatchEndpoint<TMessage>(string Queue, Action<IReceiveEndpointConfigurator>? Configure)
    where TMessage : class;

/// <summary>Names the endpoint and lets it take enough messages at once for a batch being applied and the next one collecting.</summary>
sealed class BatchConsumerDefinition<TMessage> : ConsumerDefinition<BatchConsumer<TMessage>>
    where TMessage : class
{
    readonly BatchEndpoint<TMessage> _endpoint;

    public BatchConsumerDefinition(BatchEndpoint<TMessage> endpoint)
    {
        _endpoint = endpoint;
        EndpointName = endpoint.Queue;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator, IConsumerConfigurator<BatchConsumer<TMessage>> consumerConfigurator,
        IRegistrationContext context)
    {
        var services = context.GetRequiredService<IServiceProviderIsService>();
        if (!services.IsService(typeof(OutboxDbContext)))
            throw new ConfigurationException($"AddIntegrationBatch<{typeof(TMessage).Name}>(\"{_endpoint.Queue}\") applies batches on the outbox's DbContext: call services.AddIntegrationOutbox<TDbContext>() too");
        // Invalid options throw here (OptionsValidationException naming the key) if start-up validation has not yet.
        var options = context.GetRequiredService<IOptionsMonitor<BatchingOptions>>().Get(_endpoint.Queue);
        endpointConfigurator.PrefetchCount = Math.Max(endpointConfigurator.PrefetchCount, options.InFlight);
        endpointConfigurator.ConcurrentMessageLimit = options.InFlight;
        _endpoint.Configure?.Invoke(endpointConfigurator);
    }
}

/// <summary>Checks one message and hands it to the collector; returns (and so lets MassTransit acknowledge it) after its batch committed.</summary>
sealed class BatchConsumer<TMessage>(BatchCollector<TMessage> collector, IBatchHandler<TMessage> handler, IOptionsMonitor<BatchingOptions> options) : IConsumer<TMessage>
    where TMessage : class
{
    public Task Consume(ConsumeContext<TMessage> context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.MessageId is null && options.Get(collector.Queue).RequireMessageId)
            throw new BatchMessageRejectedException($"A {typeof(TMessage).Name} on {collector.Queue} has no MessageId: the batch's inbox needs one to apply it exactly once (set the message_id property)");
        if (handler.Validate(context.Message) is { } reason)
            throw new BatchMessageRejectedException(reason);
        return collector.Add(context);
    }
}
