using System.Collections.Concurrent;
using Integration.Outbox.Batching;
using Integration.Outbox.Writing;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Integration.Outbox.Tests.Batching;

/// <summary>A transport the batching specs run on: every spec runs on each (contract tests).</summary>
public interface IBatchTransport : IAsyncDisposable
{
    Task StartAsync();

    void Use(IBusRegistrationConfigurator bus);
}

/// <summary>MassTransit's in-memory transport (the database is still PostgreSQL: the batch commits there).</summary>
public sealed class InMemoryTransport : IBatchTransport
{
    public Task StartAsync() => Task.CompletedTask;

    public void Use(IBusRegistrationConfigurator bus) => bus.UsingInMemory((context, cfg) => cfg.ConfigureEndpoints(context));

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>The real broker, in a virtual host of the spec's own.</summary>
public sealed class RabbitMqTransport : IBatchTransport
{
    TestBroker? _broker;

    public async Task StartAsync() => _broker ??= await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("batching");

    public void Use(IBusRegistrationConfigurator bus) => bus.UsingRabbitMq((context, cfg) =>
    {
        _broker!.ConfigureHost(cfg);
        cfg.ConfigureEndpoints(context);
    });

    public async ValueTask DisposeAsync()
    {
        if (_broker is not null)
            await _broker.DisposeAsync();
    }
}

/// <summary>Applies a batch of charges: one row and one CardCharged (through the outbox) per message; the batch step commits.</summary>
public sealed class ChargeBatchHandler(ShopDbContext db, IOutbox outbox, BatchLog log) : IBatchHandler<ChargeCard>
{
    public string? Validate(ChargeCard message) => message.Amount == 0 ? "amount must not be 0" : null;

    public Task HandleAsync(IReadOnlyList<ChargeCard> messages, CancellationToken cancellationToken)
    {
        log.Batches.Enqueue(messages.Count);
        foreach (var message in messages)
        {
            if (message.Amount < 0)
                throw new InvalidOperationException($"card {message.CardId}: a charge must not be negative ({message.Amount})");
            var charge = new Charge { Id = Guid.NewGuid(), CardId = message.CardId, Amount = message.Amount };
            db.Charges.Add(charge);
            outbox.Publish(new CardCharged(charge.Id, charge.CardId, charge.Amount));
        }

        return Task.CompletedTask;
    }
}

/// <summary>The sizes of the batches the handler was called with, in order.</summary>
public sealed class BatchLog
{
    public ConcurrentQueue<int> Batches { get; } = new();
}

/// <summary>A message that reached the error queue, with the reason MassTransit put in its headers.</summary>
public sealed record Faulted(ChargeCard Message, Guid? MessageId, string? Reason);

/// <summary>What reached the error queue.</summary>
public sealed class ErrorLog
{
    public ConcurrentQueue<Faulted> Messages { get; } = new();
}

public sealed class ErrorQueueConsumer(ErrorLog errors) : IConsumer<ChargeCard>
{
    public Task Consume(ConsumeContext<ChargeCard> context)
    {
        errors.Messages.Enqueue(new Faulted(context.Message, context.MessageId, context.ReceiveContext.TransportHeaders.Get<string>("MT-Fault-Message")
            ?? "transport: " + string.Join("; ", context.ReceiveContext.TransportHeaders.GetAll().Select(h => $"{h.Key}={h.Value}"))
            + " headers: " + string.Join("; ", context.Headers.GetAll().Select(h => $"{h.Key}={h.Value}"))));
        return Task.CompletedTask;
    }
}

/// <summary>A process with a batch endpoint <c>charge-batches</c> on a spec's own database and transport.</summary>
public sealed class BatchHost : IAsyncDisposable
{
    public const string Queue = "charge-batches";

    readonly IHost _host;

    BatchHost(IHost host) => _host = host;

    public IServiceProvider Services => _host.Services;

    public Received Received => Services.GetRequiredService<Received>();

    public BatchLog Log => Services.GetRequiredService<BatchLog>();

    public ErrorLog Errors => Services.GetRequiredService<ErrorLog>();

    public static async Task<BatchHost> StartAsync(IBatchTransport transport, TestDatabase database, Action<BatchingOptions>? batch = null,
        CrashOnceAfterCommit? crash = null, IDictionary<string, string?>? settings = null)
    {
        await transport.StartAsync();
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        if (Environment.GetEnvironmentVariable("BATCH_SPECS_LOG") is not null)
            builder.Logging.AddSimpleConsole(o => o.TimestampFormat = "HH:mm:ss.fff ").SetMinimumLevel(LogLevel.Debug).AddFilter("Microsoft.EntityFrameworkCore", LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(settings ?? new Dictionary<string, string?>());
        builder.Services.AddSingleton(new Received());
        builder.Services.AddSingleton(new BatchLog());
        builder.Services.AddSingleton(new ErrorLog());
        builder.Services.AddSingleton(new OutboxSchema(null));
        builder.Services.AddDbContext<ShopDbContext>(o => o.UseNpgsql(database.ConnectionString));
        builder.Services.AddIntegrationOutbox<ShopDbContext>(o => o.PollInterval = TimeSpan.FromSeconds(30));
        builder.Services.AddMassTransit(x =>
        {
            x.AddIntegrationBatch<ChargeCard, ChargeBatchHandler>(Queue, o =>
            {
                o.MessageLimit = 10;                       // also Integration:Batching:charge-batches:MessageLimit
                o.TimeLimit = TimeSpan.FromSeconds(1);
                batch?.Invoke(o);
            }, endpoint =>
            {
                endpoint.UseMessageRetry(r => r.Immediate(1));
                if (crash is not null)
                    endpoint.UseFilter(crash);
            });
            x.AddConsumer<CardChargedConsumer>().Endpoint(e => e.Name = "charge-batches-charged");
            x.AddConsumer<ErrorQueueConsumer>().Endpoint(e => e.Name = Queue + "_error");
            transport.Use(x);
        });
        var host = builder.Build();
        await using (var scope = host.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<ShopDbContext>().Database.EnsureCreatedAsync();
        await host.StartAsync();
        return new BatchHost(host);
    }

    /// <summary>Sends the messages to the batch queue, each with the given MessageId.</summary>
    public async Task SendAsync(params (ChargeCard Message, Guid MessageId)[] messages)
    {
        var endpoint = await Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri($"queue:{Queue}"));
        foreach (var (message, messageId) in messages)
            await endpoint.Send(message, Pipe.Execute<SendContext<ChargeCard>>(c => c.MessageId = messageId));
    }

    public async Task<long> CountAsync(string sql)
    {
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<ShopDbContext>();
        return await db.Database.SqlQueryRaw<long>(sql).SingleAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
