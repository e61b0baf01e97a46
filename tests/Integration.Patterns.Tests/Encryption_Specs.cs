using System.Text;
using Integration.Patterns.Security;
using Integration.Testing;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;
using NUnit.Framework;
using RabbitMQ.Client;

namespace Integration.Patterns.Tests;

public sealed record SecretOrder(Guid OrderId, string CardNumber);

/// <summary>Message-level encryption with AES-GCM on a real broker: what is on the wire, rotation, and every way decryption can fail.</summary>
[TestFixture]
[Category("Integration")]
public sealed class Encryption_Specs
{
    const string Queue = "secret-orders";
    static readonly byte[] KeyA = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    static readonly byte[] KeyB = Enumerable.Range(101, 32).Select(i => (byte)i).ToArray();

    static EncryptionKeyRing Ring(string current, params (string Id, byte[] Key)[] keys) =>
        EncryptionKeyRing.Create(current, keys.ToDictionary(k => k.Id, k => k.Key));

    sealed class Received
    {
        public List<SecretOrder> Orders { get; } = [];
    }

    sealed class SecretOrderConsumer(Received received) : IConsumer<SecretOrder>
    {
        public Task Consume(ConsumeContext<SecretOrder> context)
        {
            lock (received.Orders)
                received.Orders.Add(context.Message);
            return Task.CompletedTask;
        }
    }

    static async Task<(ServiceProvider Provider, Received Received)> StartConsumer(TestBroker broker, EncryptionKeyRing keys)
    {
        var received = new Received();
        var provider = new ServiceCollection()
            .AddSingleton(received)
            .AddMassTransitTestHarness(x =>
            {
                x.AddConsumer<SecretOrderConsumer>();
                x.UsingRabbitMq((context, cfg) =>
                {
                    broker.ConfigureHost(cfg);
                    cfg.ReceiveEndpoint(Queue, e =>
                    {
                        e.UseAesGcmEncryption(keys, requireEncrypted: true);
                        e.ConfigureConsumer<SecretOrderConsumer>(context);
                    });
                });
            })
            .BuildServiceProvider(true);
        await provider.GetRequiredService<ITestHarness>().Start();
        return (provider, received);
    }

    static async Task SendEncrypted(TestBroker broker, EncryptionKeyRing keys, string queue, SecretOrder order)
    {
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            broker.ConfigureHost(cfg);
            cfg.UseAesGcmEncryption(keys);
        });
        await bus.StartAsync();
        try
        {
            var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{queue}"));
            await endpoint.Send(order);
        }
        finally
        {
            await bus.StopAsync();
        }
    }

    static async Task<BasicGetResult?> GetOne(TestBroker broker, string queue, TimeSpan timeout)
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
        }, timeout);
        return result;
    }

    static string Header(BasicGetResult message, string name) =>
        message.BasicProperties.Headers?.TryGetValue(name, out var value) == true
            ? value switch { byte[] bytes => Encoding.UTF8.GetString(bytes), _ => value?.ToString() ?? "" }
            : "";

    [Test]
    public async Task When_a_message_is_encrypted_should_carry_no_plaintext_on_the_wire()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var order = new SecretOrder(Guid.NewGuid(), "4111-1111-1111-1111");

        await SendEncrypted(broker, Ring("a", ("a", KeyA)), "secret-wire", order);

        var message = await GetOne(broker, "secret-wire", TimeSpan.FromSeconds(10));
        Assert.That(message, Is.Not.Null, "the encrypted message never reached the queue");
        var body = Encoding.UTF8.GetString(message!.Body.Span);
        Assert.Multiple(() =>
        {
            Assert.That(message.BasicProperties.ContentType, Is.EqualTo(MessageEncryption.ContentType));
            Assert.That(Header(message, MessageEncryption.KeyIdHeader), Is.EqualTo("a"));
            Assert.That(body, Does.Not.Contain("4111"), "card number visible on the wire");
            Assert.That(body, Does.Not.Contain(nameof(SecretOrder)), "message type visible on the wire");
        });
    }

    [Test]
    public async Task When_encrypted_message_is_consumed_should_round_trip()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var (provider, received) = await StartConsumer(broker, Ring("a", ("a", KeyA)));
        await using var _ = provider;
        var order = new SecretOrder(Guid.NewGuid(), "4111-1111-1111-1111");

        await SendEncrypted(broker, Ring("a", ("a", KeyA)), Queue, order);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(received.Orders.Contains(order)), TimeSpan.FromSeconds(15)), Is.True);
    }

    [Test]
    public async Task When_key_is_rotated_should_still_decrypt_messages_under_the_old_key()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var (provider, received) = await StartConsumer(broker, Ring("b", ("a", KeyA), ("b", KeyB)));
        await using var _ = provider;
        var old = new SecretOrder(Guid.NewGuid(), "old-key");
        var current = new SecretOrder(Guid.NewGuid(), "new-key");

        await SendEncrypted(broker, Ring("a", ("a", KeyA)), Queue, old);
        await SendEncrypted(broker, Ring("b", ("a", KeyA), ("b", KeyB)), Queue, current);

        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(received.Orders.Contains(old) && received.Orders.Contains(current)),
            TimeSpan.FromSeconds(15)), Is.True, "a message under the retired key or the current key was not consumed");
    }

    [Test]
    public async Task When_key_is_unknown_should_move_the_message_to_the_error_queue_with_the_reason_and_keep_consuming()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var (provider, received) = await StartConsumer(broker, Ring("a", ("a", KeyA)));
        await using var _ = provider;
        var rogue = new SecretOrder(Guid.NewGuid(), "rogue");
        var good = new SecretOrder(Guid.NewGuid(), "good");

        await SendEncrypted(broker, Ring("retired", ("retired", KeyB)), Queue, rogue);
        await SendEncrypted(broker, Ring("a", ("a", KeyA)), Queue, good);

        var failed = await GetOne(broker, Queue + "_error", TimeSpan.FromSeconds(15));
        Assert.That(failed, Is.Not.Null, "the undecryptable message was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("'retired'").And.Contain("does not have"));
        Assert.That(await Eventually.TrueAsync(() => Task.FromResult(received.Orders.Contains(good)), TimeSpan.FromSeconds(15)), Is.True,
            "the endpoint stopped consuming after a bad message");
        Assert.That(received.Orders, Does.Not.Contain(rogue));
    }

    [Test]
    public async Task When_body_is_tampered_should_move_the_message_to_the_error_queue_with_the_reason()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var (provider, received) = await StartConsumer(broker, Ring("a", ("a", KeyA)));
        await using var _ = provider;

        var factory = new ConnectionFactory { Uri = broker.AmqpUri };
        await using (var connection = await factory.CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            var properties = new BasicProperties
            {
                ContentType = MessageEncryption.ContentType,
                MessageId = Guid.NewGuid().ToString(),
                Persistent = true,
                Headers = new Dictionary<string, object?> { [MessageEncryption.KeyIdHeader] = "a" },
            };
            await channel.BasicPublishAsync("", Queue, mandatory: false, properties, new byte[64]);
        }

        var failed = await GetOne(broker, Queue + "_error", TimeSpan.FromSeconds(15));
        Assert.That(failed, Is.Not.Null, "the tampered message was not dead-lettered");
        Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("failed authentication"));
        Assert.That(received.Orders, Is.Empty);
    }

    [Test]
    public async Task When_endpoint_requires_encryption_should_reject_plain_messages_to_the_error_queue()
    {
        var infrastructure = await IntegrationInfrastructure.GetAsync();
        await using var broker = await infrastructure.CreateVirtualHostAsync("crypt");
        var (provider, received) = await StartConsumer(broker, Ring("a", ("a", KeyA)));
        await using var _ = provider;

        var bus = Bus.Factory.CreateUsingRabbitMq(cfg => broker.ConfigureHost(cfg));
        await bus.StartAsync();
        try
        {
            await (await bus.GetSendEndpoint(new Uri($"queue:{Queue}"))).Send(new SecretOrder(Guid.NewGuid(), "plain"));
        }
        finally
        {
            await bus.StopAsync();
        }

        var failed = await GetOne(broker, Queue + "_error", TimeSpan.FromSeconds(15));
        Assert.That(failed, Is.Not.Null, "a plain message was accepted by an endpoint that requires encryption");
        Assert.That(received.Orders, Is.Empty);
    }
}

/// <summary>Key ring validation: every mistake names the setting.</summary>
[TestFixture]
public sealed class EncryptionKeyRing_Specs
{
    [Test]
    public void When_key_has_the_wrong_length_should_name_the_key()
    {
        var options = new MessageEncryptionOptions { CurrentKeyId = "k1", Keys = { ["k1"] = Convert.ToBase64String(new byte[10]) } };
        Assert.That(() => EncryptionKeyRing.FromOptions(options), Throws.ArgumentException.With.Message.Contains("Keys:k1").And.Message.Contains("16, 24 or 32 bytes"));
    }

    [Test]
    public void When_current_key_is_missing_should_name_the_setting()
    {
        var options = new MessageEncryptionOptions { CurrentKeyId = "k2", Keys = { ["k1"] = EncryptionKeyRing.GenerateKey() } };
        Assert.That(() => EncryptionKeyRing.FromOptions(options), Throws.ArgumentException.With.Message.Contains("CurrentKeyId"));
    }

    [Test]
    public void When_key_is_not_base64_should_name_the_key()
    {
        var options = new MessageEncryptionOptions { CurrentKeyId = "k1", Keys = { ["k1"] = "not base64!" } };
        Assert.That(() => EncryptionKeyRing.FromOptions(options), Throws.ArgumentException.With.Message.Contains("Keys:k1").And.Message.Contains("Base64"));
    }

    [Test]
    public void When_printed_should_not_reveal_key_material()
    {
        var key = EncryptionKeyRing.GenerateKey();
        var ring = EncryptionKeyRing.FromOptions(new MessageEncryptionOptions { CurrentKeyId = "k1", Keys = { ["k1"] = key } });
        Assert.That(ring.ToString(), Does.Not.Contain(key).And.Contains("k1"));
    }
}
