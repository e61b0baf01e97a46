using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Integration.Hosting;
using Integration.Operations;
using Integration.Patterns.Security;
using Integration.Testing;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using NUnit.Framework;
using static Integration.Patterns.Tests.Security.Crypto;

namespace Integration.Patterns.Tests.Security;

/// <summary>The database of the host the leak specs run: only the operations tables (message store, audit).</summary>
public sealed class LeakDbContext(DbContextOptions<LeakDbContext> options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder) => modelBuilder.AddIntegrationOperations();
}

/// <summary>Refuses every payment, so each one ends in <c>payments_error</c>; its reason names the payment id only.</summary>
public sealed class RefusingPaymentConsumer : IConsumer<Payment>
{
    public Task Consume(ConsumeContext<Payment> context) =>
        throw new InvalidOperationException($"payment {context.Message.PaymentId} refused by the spec");
}

/// <summary>Every log line a host writes, with its exception, at every level.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    readonly ConcurrentQueue<string> _lines = new();

    public string Text => string.Join("\n", _lines);

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    sealed class Logger(string category, ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
        {
            lines.Enqueue($"{category} scope: {state}");
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var properties = state is IEnumerable<KeyValuePair<string, object?>> values ? string.Join(" ", values.Select(v => $"{v.Key}={v.Value}")) : "";
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {properties} {exception}");
        }
    }
}

/// <summary>
/// THE guarantee of encryption: a host with the operations message store keeps a copy of every message, and a refused one
/// lands in <c>payments_error</c>; the card number and the key must appear in none of those bytes — the message store
/// rows in PostgreSQL, the error queue's body and headers (read raw over AMQP and through the management API), the logs.
/// </summary>
public static class EncryptionLeak_Specs
{
    const string Card = "4111-2222-3333-4444";
    const string Queue = "payments";

    [TestFixture("envelope")]
    [TestFixture("fields")]
    [TestFixture("none")]
    [Category("Integration")]
    public sealed class When_a_secret_goes_through_a_host_with_the_message_store_into_the_error_queue(string mode)
    {
        // mode: "envelope" (UseEnvelopeEncryption), "fields" (UseFieldEncryption, [Encrypted] card number and IBAN), "none" (the control).
        [Test]
        public async Task Should_leave_neither_the_secret_nor_the_key_in_the_store_the_error_queue_or_the_logs()
        {
            var logs = new CapturedLogs();
            void Options(IntegrationServiceHostOptions options)
            {
                options.Settings["Integration:Encryption:CurrentKeyId"] = "kek-1";
                options.Settings["Integration:Encryption:Keys:kek-1"] = Convert.ToBase64String(KekA);
                options.Settings["Integration:MessageStore:Exchanges:0"] = Queue;
                options.Settings["Integration:MessageStore:Exchanges:1"] = Queue + "_error";
                options.Settings["Logging:LogLevel:Default"] = "Trace";
            }

            await using var host = await IntegrationServiceHost.StartAsync(h =>
            {
                h.Host.AddIntegrationDefaults<LeakDbContext>(bus => bus.AddConsumer<RefusingPaymentConsumer>().Endpoint(e => e.Name = Queue));
                // After the defaults, which replace the log providers with the host's console logging.
                h.Logging.SetMinimumLevel(LogLevel.Trace).AddProvider(logs);
                h.Host.AddIntegrationOperations<LeakDbContext>();
                // The one call: keys from Integration:Encryption, validated when the bus is configured.
                h.Services.AddIntegrationBusConfiguration((context, cfg) =>
                {
                    var configuration = context.GetRequiredService<IConfiguration>();
                    if (mode == "envelope")
                        cfg.UseEnvelopeEncryption(configuration);
                    else if (mode == "fields")
                        cfg.UseFieldEncryption(configuration);
                });
            }, Options);
            var infrastructure = await IntegrationInfrastructure.GetAsync();
            await WaitForStoreBindings(infrastructure, host.Broker.VirtualHost);
            var payment = new Payment(Guid.NewGuid(), "eu", Card, new Payer("Ada", "DE89370400440532013000"));

            await (await host.Services.GetRequiredService<IBus>().GetSendEndpoint(new Uri($"queue:{Queue}"))).Send(payment);

            // The raw error queue message through the management API (peeked, requeued), then taken over AMQP.
            var managementView = await PeekThroughManagement(infrastructure, host.Broker.VirtualHost, Queue + "_error");
            var failed = await TakeAsync(host.Broker, Queue + "_error", 30);
            Assert.That(failed, Is.Not.Null, "the refused payment never reached payments_error");
            Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain($"payment {payment.PaymentId} refused"), "the reason travels with the message");
            var stored = await StoreRows(host.Database.ConnectionString, 2);

            var secret = Encoding.UTF8.GetBytes(Card);
            var iban = Encoding.UTF8.GetBytes("DE89370400440532013000");
            var places = new (string Where, byte[] Bytes)[]
            {
                ("the error queue body", failed!.Body.ToArray()),
                ("the error queue headers", Encoding.UTF8.GetBytes(AllHeaders(failed))),
                ("the error queue through the management API", Encoding.UTF8.GetBytes(managementView)),
                ("the message store rows", stored),
                ("the logs", Encoding.UTF8.GetBytes(logs.Text)),
            };
            if (mode == "none")
            {
                // The control: without encryption the same search finds the card number where it is stored, so the
                // encrypted runs passing means the bytes were searched, not that the search is blind.
                foreach (var (where, bytes) in places.Where(p => p.Where != "the logs" && p.Where != "the error queue headers"))
                    Assert.That(bytes.AsSpan().IndexOf(secret), Is.Not.EqualTo(-1), $"control: the plain card number should be found in {where}");
                return;
            }

            Assert.Multiple(() =>
            {
                foreach (var (where, bytes) in places)
                {
                    Assert.That(bytes, Is.Not.Empty, $"{where}: nothing was read");
                    AssertAbsent(bytes, secret, "the card number", where);
                    AssertAbsent(bytes, iban, "the IBAN", where);
                    AssertAbsent(bytes, KekA, "the key-encryption key", where);
                }
            });
            Assert.That(logs.Text, Does.Contain("refused by the spec"), "the logs were captured (the failure is logged)");
            Assert.That(Encoding.UTF8.GetString(stored), Does.Contain(payment.PaymentId.ToString("N")[..8]).Or.Contain("kek-1"),
                "the store rows were read (they name the message or its key id)");
        }

        static async Task WaitForStoreBindings(IntegrationInfrastructure infrastructure, string vhost) =>
            Assert.That(await Eventually.TrueAsync(async () =>
            {
                using var response = await infrastructure.ManagementRequest(HttpMethod.Get, $"api/queues/{Uri.EscapeDataString(vhost)}/message-store/bindings");
                if (!response.IsSuccessStatusCode)
                    return false;
                var sources = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.EnumerateArray()
                    .Select(b => b.GetProperty("source").GetString()).ToHashSet();
                return sources.Contains(Queue) && sources.Contains(Queue + "_error");
            }, TimeSpan.FromSeconds(30)), Is.True, "the message store never bound its queue to payments and payments_error");

        static async Task<string> PeekThroughManagement(IntegrationInfrastructure infrastructure, string vhost, string queue)
        {
            var text = "";
            Assert.That(await Eventually.TrueAsync(async () =>
            {
                using var response = await infrastructure.ManagementRequest(HttpMethod.Post, $"api/queues/{Uri.EscapeDataString(vhost)}/{queue}/get",
                    """{"count":10,"ackmode":"ack_requeue_true","encoding":"auto","truncate":1000000}""");
                if (!response.IsSuccessStatusCode)
                    return false;
                text = await response.Content.ReadAsStringAsync();
                return JsonDocument.Parse(text).RootElement.GetArrayLength() > 0;
            }, TimeSpan.FromSeconds(30)), Is.True, $"nothing arrived at {queue}");
            // The payload may come as Base64 (a binary body): search its decoded bytes too.
            var decoded = string.Join("\n", JsonDocument.Parse(text).RootElement.EnumerateArray()
                .Where(m => m.GetProperty("payload_encoding").GetString() == "base64")
                .Select(m => Encoding.UTF8.GetString(Convert.FromBase64String(m.GetProperty("payload").GetString()!))));
            return text + "\n" + decoded;
        }

        /// <summary>Every column of every message store row, once at least <paramref name="count"/> are there (the message and its error copy).</summary>
        static async Task<byte[]> StoreRows(string connectionString, int count)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            Assert.That(await Eventually.TrueAsync(async () =>
            {
                await using var command = new NpgsqlCommand($"SELECT count(*) FROM {OperationsModel.MessageStoreTable}", connection);
                return (long)(await command.ExecuteScalarAsync())! >= count;
            }, TimeSpan.FromSeconds(30)), Is.True, $"the message store did not keep {count} rows");
            var bytes = new List<byte>();
            await using var read = new NpgsqlCommand($"SELECT row_to_json(m)::text, body FROM {OperationsModel.MessageStoreTable} m", connection);
            await using var reader = await read.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(reader.GetString(0)));
                bytes.AddRange((byte[])reader[1]);
            }

            return bytes.ToArray();
        }
    }
}
