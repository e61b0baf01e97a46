using System.Text;
using Integration.Patterns.Security;
using Integration.Testing;
using NUnit.Framework;
using static Integration.Patterns.Tests.Security.Crypto;

namespace Integration.Patterns.Tests.Security;

/// <summary>Envelope encryption on the message path (UseEnvelopeEncryption) on the real broker: a data key per message, wrapped by a key-encryption key.</summary>
public static class EnvelopeEncryption_Specs
{
    const string Queue = "payments";

    static Payment NewPayment(string card = "4111-1111-1111-1111") => new(Guid.NewGuid(), "eu", card);

    [TestFixture]
    [Category("Integration")]
    public sealed class When_a_message_is_sent_with_envelope_encryption
    {
        [Test]
        public async Task Should_carry_neither_the_plaintext_nor_the_key_on_the_wire()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(Aes("a", ("a", KekA)))))
                await producer.Send("payments-wire", NewPayment());

            var message = await TakeAsync(broker, "payments-wire");

            Assert.That(message, Is.Not.Null, "the encrypted message never reached the queue");
            var wire = message!.Body.ToArray().Concat(Encoding.UTF8.GetBytes(AllHeaders(message))).ToArray();
            Assert.Multiple(() =>
            {
                Assert.That(message.BasicProperties.ContentType, Is.EqualTo(MessageEncryption.EnvelopeContentType));
                Assert.That(Header(message, EnvelopeEncryption.KeyIdHeader), Is.EqualTo("a"));
                Assert.That(Header(message, EnvelopeEncryption.WrappedKeyHeader), Is.Not.Empty);
                AssertAbsent(wire, Encoding.UTF8.GetBytes("4111-1111-1111-1111"), "the card number", "the message on the wire");
                AssertAbsent(wire, Encoding.UTF8.GetBytes(nameof(Payment)), "the message type", "the message on the wire");
                AssertAbsent(wire, KekA, "the key-encryption key", "the message on the wire");
            });
        }

        [Test]
        public async Task Should_be_consumed_in_plaintext_with_a_fresh_data_key_per_message()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var keys = Aes("a", ("a", KekA));
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint(Queue, e =>
            {
                e.UseEnvelopeEncryption(keys, requireEncrypted: true);
                seen.Handle(e);
            }));
            var first = NewPayment();
            var second = NewPayment();

            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(keys)))
            {
                await producer.Send("payments-copy", first);
                await producer.Send("payments-copy", second);
                await producer.Send(Queue, first);
                await producer.Send(Queue, second);
            }

            Assert.That(await seen.WaitFor(p => p == first) && await seen.WaitFor(p => p == second), Is.True, "a message did not round trip");
            var a = await TakeAsync(broker, "payments-copy");
            var b = await TakeAsync(broker, "payments-copy");
            Assert.That(Header(a!, EnvelopeEncryption.WrappedKeyHeader), Is.Not.EqualTo(Header(b!, EnvelopeEncryption.WrappedKeyHeader)),
                "two messages carried the same wrapped data key");
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_the_key_encryption_key_is_rotated
    {
        [Test]
        public async Task Should_still_decrypt_messages_stored_under_the_old_key_without_re_encrypting_them()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var old = NewPayment("old-kek-card");
            var current = NewPayment("new-kek-card");

            // Stored while no consumer runs: one message under k1, then the producers rotate to k2.
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(Aes("k1", ("k1", KekA)))))
                await producer.Send(Queue, old);
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(Aes("k2", ("k1", KekA), ("k2", KekB)))))
                await producer.Send(Queue, current);

            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint(Queue, e =>
            {
                e.UseEnvelopeEncryption(Aes("k2", ("k1", KekA), ("k2", KekB)), requireEncrypted: true);
                seen.Handle(e);
            }));

            Assert.That(await seen.WaitFor(p => p == old) && await seen.WaitFor(p => p == current), Is.True, "a message under the old or the new key was not consumed");
            Assert.That(seen.All.Single(s => s.Message == old).KeyId, Is.EqualTo("k1"), "the stored message should keep the key it was sealed with");
            Assert.That(seen.All.Single(s => s.Message == current).KeyId, Is.EqualTo("k2"));
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_a_message_is_sent_with_a_public_key_only
    {
        [Test]
        public async Task Should_be_read_by_the_holder_of_the_private_key()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var (publicPem, privatePem) = RsaPair();
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint(Queue, e =>
            {
                e.UseEnvelopeEncryption(Rsa("rsa-1", privatePem), requireEncrypted: true);
                seen.Handle(e);
            }));
            var payment = NewPayment();

            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(Rsa("rsa-1", publicPem))))
                await producer.Send(Queue, payment);

            Assert.That(await seen.WaitFor(p => p == payment), Is.True, "the private key holder did not read the message");
            Assert.That(seen.All.Single().KeyId, Is.EqualTo("rsa-1"));
        }

        [Test]
        public async Task Should_not_be_readable_by_a_holder_of_the_public_key()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var (publicPem, _) = RsaPair();
            var seen = new Seen<Payment>();
            var publicOnly = Rsa("rsa-1", publicPem);
            await using var producer = await RunningBus.StartAsync(broker, cfg =>
            {
                cfg.UseEnvelopeEncryption(publicOnly);
                cfg.ReceiveEndpoint(Queue, e => seen.Handle(e));
            });

            await producer.Send(Queue, NewPayment());

            var failed = await TakeAsync(broker, Queue + "_error");
            Assert.That(failed, Is.Not.Null, "the producer's own endpoint accepted a message it cannot open");
            Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("'rsa-1' is a public key here"));
            Assert.That(seen.All, Is.Empty);
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_a_message_cannot_be_decrypted
    {
        static async Task<BasicGetResultText> Fail(Func<Integration.Testing.TestBroker, Task> send, Integration.Testing.TestBroker broker, IKeyProvider consumerKeys)
        {
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint(Queue, e =>
            {
                e.UseEnvelopeEncryption(consumerKeys, requireEncrypted: true);
                seen.Handle(e);
            }));
            await send(broker);
            var failed = await TakeAsync(broker, Queue + "_error");
            Assert.That(failed, Is.Not.Null, "the message was not moved to the error queue");
            var good = NewPayment("after");
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseEnvelopeEncryption(consumerKeys)))
                await producer.Send(Queue, good);
            Assert.That(await seen.WaitFor(p => p == good), Is.True, "the endpoint stopped consuming after a bad message");
            Assert.That(seen.All.Select(s => s.Message.CardNumber), Is.EquivalentTo(new[] { "after" }));
            return new BasicGetResultText(Header(failed!, "MT-Fault-Message"), AllHeaders(failed!), failed!.Body.ToArray());
        }

        public sealed record BasicGetResultText(string Reason, string Headers, byte[] Body);

        static void AssertNoSecrets(BasicGetResultText failed, params byte[][] keys)
        {
            var stored = failed.Body.Concat(Encoding.UTF8.GetBytes(failed.Headers)).ToArray();
            AssertAbsent(stored, Encoding.UTF8.GetBytes("4111-1111-1111-1111"), "the card number", "the error queue message");
            foreach (var key in keys)
                AssertAbsent(stored, key, "key material", "the error queue message");
        }

        [Test]
        public async Task Should_move_a_tampered_body_to_the_error_queue_with_the_reason()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var keys = Aes("a", ("a", KekA));

            var failed = await Fail(async b =>
            {
                await using (var producer = await RunningBus.StartAsync(b, cfg => cfg.UseEnvelopeEncryption(keys)))
                    await producer.Send("payments-intercepted", NewPayment());
                var intercepted = await TakeAsync(b, "payments-intercepted");
                var body = intercepted!.Body.ToArray();
                body[^1] ^= 0x01;
                await PublishRawAsync(b, Queue, intercepted.BasicProperties, body);
            }, broker, keys);

            Assert.That(failed.Reason, Does.Contain("failed authentication with key 'a'"));
            AssertNoSecrets(failed, KekA);
        }

        [Test]
        public async Task Should_move_a_message_under_an_unknown_key_to_the_error_queue_with_the_reason()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");

            var failed = await Fail(async b =>
            {
                await using var producer = await RunningBus.StartAsync(b, cfg => cfg.UseEnvelopeEncryption(Aes("retired", ("retired", KekB))));
                await producer.Send(Queue, NewPayment());
            }, broker, Aes("a", ("a", KekA)));

            Assert.That(failed.Reason, Does.Contain("names key 'retired', which this endpoint does not have"));
            AssertNoSecrets(failed, KekA, KekB);
        }

        [Test]
        public async Task Should_move_a_message_for_another_private_key_to_the_error_queue_with_the_reason()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var (theirPublic, _) = RsaPair();
            var (_, ourPrivate) = RsaPair();

            var failed = await Fail(async b =>
            {
                await using var producer = await RunningBus.StartAsync(b, cfg => cfg.UseEnvelopeEncryption(Rsa("rsa-1", theirPublic)));
                await producer.Send(Queue, NewPayment());
            }, broker, new StaticKeyProvider("a", [new AesKeyEncryptionKey("a", KekA), RsaKeyEncryptionKey.FromPem("rsa-1", ourPrivate)]));

            Assert.That(failed.Reason, Does.Contain("does not unwrap with key 'rsa-1'"));
            AssertNoSecrets(failed, KekA, Encoding.ASCII.GetBytes(ourPrivate.Split('\n')[1]));
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_an_endpoint_requires_envelope_encryption
    {
        [Test]
        public async Task Should_move_a_plain_message_to_the_error_queue()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("envelope");
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint(Queue, e =>
            {
                e.UseEnvelopeEncryption(Aes("a", ("a", KekA)), requireEncrypted: true);
                seen.Handle(e);
            }));

            await using (var producer = await RunningBus.StartAsync(broker, _ => { }))
                await producer.Send(Queue, NewPayment("plain"));

            var failed = await TakeAsync(broker, Queue + "_error");
            Assert.That(failed, Is.Not.Null, "a plain message was accepted by an endpoint that requires envelope encryption");
            Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("has no Integration-Encryption-Key-Id header"));
            Assert.That(seen.All, Is.Empty);
        }
    }
}
