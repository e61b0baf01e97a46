using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Integration.Patterns.Security;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Patterns.Tests.Security;

/// <summary>A payment whose card number is secret; the envelope specs encrypt all of it, the field specs only the card number.</summary>
public sealed record Payment(Guid PaymentId, string Region, [property: Encrypted] string CardNumber, Payer? Payer = null);

/// <summary>A nested object with an encrypted property of its own.</summary>
public sealed record Payer(string Name, [property: Encrypted] string Iban);

/// <summary>A contract with no attributes: its IBAN is listed with the field encryption configurator.</summary>
public sealed record Invoice(Guid InvoiceId, string Customer, string Iban);

/// <summary>A bus started for one spec, stopped at dispose.</summary>
public sealed class RunningBus(IBusControl bus) : IAsyncDisposable
{
    public IBusControl Bus { get; } = bus;

    public static async Task<RunningBus> StartAsync(TestBroker broker, Action<IRabbitMqBusFactoryConfigurator> configure)
    {
        var bus = MassTransit.Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            broker.ConfigureHost(cfg);
            configure(cfg);
        });
        await bus.StartAsync();
        return new RunningBus(bus);
    }

    public async Task Send<T>(string queue, T message)
        where T : class =>
        await (await Bus.GetSendEndpoint(new Uri($"queue:{queue}"))).Send(message);

    public async ValueTask DisposeAsync() => await Bus.StopAsync();
}

/// <summary>What a consumer saw: the message and the key id its transport headers named.</summary>
public sealed class Seen<T>
    where T : class
{
    readonly ConcurrentQueue<(T Message, string? KeyId)> _seen = new();

    public IReadOnlyList<(T Message, string? KeyId)> All => _seen.ToList();

    public void Handle(IReceiveEndpointConfigurator e) => e.Handler<T>(c =>
    {
        _seen.Enqueue((c.Message, c.ReceiveContext.TransportHeaders.Get<string>(EnvelopeEncryption.KeyIdHeader)));
        return Task.CompletedTask;
    });

    public async Task<bool> WaitFor(Func<T, bool> match, int count = 1, double seconds = 15) =>
        await Eventually.TrueAsync(() => Task.FromResult(_seen.Count(s => match(s.Message)) >= count), TimeSpan.FromSeconds(seconds));
}

/// <summary>Keys and raw broker access for the encryption specs.</summary>
public static class Crypto
{
    public static readonly byte[] KekA = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    public static readonly byte[] KekB = Enumerable.Range(101, 32).Select(i => (byte)i).ToArray();

    public static IKeyProvider Aes(string current, params (string Id, byte[] Key)[] keys) =>
        new StaticKeyProvider(current, keys.Select(k => (IKeyEncryptionKey)new AesKeyEncryptionKey(k.Id, k.Key)));

    /// <summary>A fresh RSA-2048 pair as PEM: the public key (SubjectPublicKeyInfo) and the private key (PKCS#8).</summary>
    public static (string PublicPem, string PrivatePem) RsaPair()
    {
        using var rsa = RSA.Create(2048);
        return (rsa.ExportSubjectPublicKeyInfoPem(), rsa.ExportPkcs8PrivateKeyPem());
    }

    public static IKeyProvider Rsa(string id, string pem) => new StaticKeyProvider(id, [RsaKeyEncryptionKey.FromPem(id, pem)]);

    /// <summary>Takes one message from <paramref name="queue"/> as a plain AMQP client (null when none came in time).</summary>
    public static async Task<BasicGetResult?> TakeAsync(TestBroker broker, string queue, double seconds = 15)
    {
        var factory = new ConnectionFactory { Uri = broker.AmqpUri };
        await using var connection = await factory.CreateConnectionAsync();
        BasicGetResult? result = null;
        await Eventually.TrueAsync(async () =>
        {
            // A basic.get on a queue that does not exist yet closes the channel: use a fresh one per attempt.
            await using var channel = await connection.CreateChannelAsync();
            try
            {
                result = await channel.BasicGetAsync(queue, autoAck: true);
            }
            catch (RabbitMQ.Client.Exceptions.OperationInterruptedException)
            {
                return false;
            }

            return result is not null;
        }, TimeSpan.FromSeconds(seconds));
        return result;
    }

    /// <summary>Publishes a body with the given properties straight to a queue.</summary>
    public static async Task PublishRawAsync(TestBroker broker, string queue, IReadOnlyBasicProperties properties, byte[] body)
    {
        var factory = new ConnectionFactory { Uri = broker.AmqpUri };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await channel.BasicPublishAsync("", queue, mandatory: true, new BasicProperties(properties), body);
    }

    public static string Header(BasicGetResult message, string name) =>
        message.BasicProperties.Headers?.TryGetValue(name, out var value) == true ? Text(value) : "";

    /// <summary>Every header and property of a message as text, for searching it.</summary>
    public static string AllHeaders(BasicGetResult message) =>
        string.Join("\n", (message.BasicProperties.Headers ?? new Dictionary<string, object?>()).Select(h => $"{h.Key}={Text(h.Value)}"))
        + $"\ncontent-type={message.BasicProperties.ContentType}\ntype={message.BasicProperties.Type}\ncorrelation-id={message.BasicProperties.CorrelationId}";

    static string Text(object? value) => value switch
    {
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        IEnumerable<object> list => string.Join(",", list.Select(Text)),
        IDictionary<string, object?> table => string.Join(",", table.Select(t => $"{t.Key}={Text(t.Value)}")),
        _ => value?.ToString() ?? "",
    };

    /// <summary>
    /// The forms a secret can take in stored bytes: UTF-8 text, Base64 (standard and URL-safe), hex; asserted absent from <paramref name="haystack"/>.
    /// </summary>
    public static void AssertAbsent(byte[] haystack, byte[] secret, string what, string where)
    {
        var forms = new List<(string Form, byte[] Bytes)>
        {
            ("raw", secret),
            ("base64", Encoding.ASCII.GetBytes(Convert.ToBase64String(secret))),
            ("base64url", Encoding.ASCII.GetBytes(Convert.ToBase64String(secret).TrimEnd('=').Replace('+', '-').Replace('/', '_'))),
            ("hex", Encoding.ASCII.GetBytes(Convert.ToHexString(secret))),
            ("hex-lower", Encoding.ASCII.GetBytes(Convert.ToHexString(secret).ToLowerInvariant())),
        };
        foreach (var (form, bytes) in forms)
            Assert.That(haystack.AsSpan().IndexOf(bytes), Is.EqualTo(-1), $"{what} ({form}) found in {where}");
    }
}
