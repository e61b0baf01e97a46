using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Integration.Patterns.ContentRouting;
using Integration.Patterns.Routing;
using Integration.Patterns.Security;
using Integration.Testing;
using MassTransit;
using NUnit.Framework;
using static Integration.Patterns.Tests.Security.Crypto;

namespace Integration.Patterns.Tests.Security;

/// <summary>Field-level encryption ([Encrypted] properties, UseFieldEncryption) on the real broker.</summary>
public static class FieldEncryption_Specs
{
    const string Card = "4111-1111-1111-1111";
    const string Iban = "DE89370400440532013000";

    static Payment NewPayment(string region = "eu") => new(Guid.NewGuid(), region, Card, new Payer("Ada", Iban));

    static JsonObject MessageOf(byte[] body) => JsonNode.Parse(body)!["message"]!.AsObject();

    [TestFixture]
    [Category("Integration")]
    public sealed class When_a_property_is_marked_encrypted
    {
        [Test]
        public async Task Should_carry_it_as_ciphertext_and_the_rest_as_plaintext()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("fields");
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseFieldEncryption(Aes("a", ("a", KekA)))))
                await producer.Send("payments-wire", NewPayment());

            var message = await TakeAsync(broker, "payments-wire");

            Assert.That(message, Is.Not.Null);
            var body = message!.Body.ToArray();
            var json = MessageOf(body);
            Assert.Multiple(() =>
            {
                Assert.That(message.BasicProperties.ContentType, Is.EqualTo("application/vnd.masstransit+json"), "the content type stays MassTransit's JSON");
                Assert.That(Header(message, MessageEncryption.EncryptedFieldsHeader), Is.EqualTo("cardNumber,payer.iban"));
                Assert.That(json["region"]!.GetValue<string>(), Is.EqualTo("eu"));
                Assert.That(json["payer"]!["name"]!.GetValue<string>(), Is.EqualTo("Ada"));
                Assert.That(json["cardNumber"]!.GetValue<string>(), Does.StartWith(FieldEncryption.Prefix + "a:"));
                Assert.That(json["payer"]!["iban"]!.GetValue<string>(), Does.StartWith(FieldEncryption.Prefix + "a:"));
                AssertAbsent(body, Encoding.UTF8.GetBytes(Card), "the card number", "the body");
                AssertAbsent(body, Encoding.UTF8.GetBytes(Iban), "the IBAN", "the body");
                AssertAbsent(body, KekA, "the key-encryption key", "the body");
            });
        }

        [Test]
        public async Task Should_be_seen_in_plaintext_by_a_consumer_with_the_key()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("fields");
            var (publicPem, privatePem) = RsaPair();
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint("payments", e =>
            {
                e.UseFieldEncryption(Rsa("rsa-1", privatePem));
                seen.Handle(e);
            }));
            var payment = NewPayment();

            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseFieldEncryption(Rsa("rsa-1", publicPem))))
                await producer.Send("payments", payment);

            Assert.That(await seen.WaitFor(p => p == payment), Is.True, "the consumer did not see the payment with its fields decrypted");
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_properties_are_listed_by_the_configurator
    {
        [Test]
        public async Task Should_encrypt_them_like_marked_ones_and_decrypt_them_for_the_consumer()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("fields");
            var keys = Aes("a", ("a", KekA));
            var seen = new Seen<Invoice>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint("invoices", e =>
            {
                e.UseFieldEncryption(keys);
                seen.Handle(e);
            }));
            var invoice = new Invoice(Guid.NewGuid(), "Ada", Iban);

            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseFieldEncryption(keys, f => f.Encrypt<Invoice>(i => i.Iban))))
            {
                await producer.Send("invoices-wire", invoice);
                await producer.Send("invoices", invoice);
            }

            var message = await TakeAsync(broker, "invoices-wire");
            var json = MessageOf(message!.Body.ToArray());
            Assert.That(json["customer"]!.GetValue<string>(), Is.EqualTo("Ada"));
            Assert.That(json["iban"]!.GetValue<string>(), Does.StartWith(FieldEncryption.Prefix + "a:"));
            AssertAbsent(message.Body.ToArray(), Encoding.UTF8.GetBytes(Iban), "the IBAN", "the body");
            Assert.That(await seen.WaitFor(i => i == invoice), Is.True, "the consumer did not see the invoice with its IBAN decrypted");
        }

        [Test]
        public void Should_refuse_an_expression_that_is_not_a_property()
        {
            Assert.That(() => Bus.Factory.CreateUsingInMemory(cfg => cfg.UseFieldEncryption(Aes("a", ("a", KekA)), f => f.Encrypt<Invoice>(i => i.Iban.Length + 1))),
                Throws.ArgumentException.With.Message.Contains("Encrypt<Invoice>").And.Message.Contains("is not a property of Invoice"));
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_a_content_router_without_keys_routes_on_a_plaintext_property
    {
        [Test]
        public async Task Should_route_it_while_the_marked_one_stays_ciphertext_on_the_wire()
        {
            var keys = Aes("a", ("a", KekA));
            var transport = new RabbitMq();
            // The route's bus has no keys at all: it reads the region and forwards the body as it came.
            await using var harness = await RouteHarness<Payment>.StartAsync(transport,
                routes => routes.From<Payment>("payments", r => r.Route(c => c.When(p => p.Region == "eu", "payments-eu").Otherwise("payments-us"))),
                ["payments-eu"], capture: e => e.UseFieldEncryption(keys));
            var eu = NewPayment("eu");
            var us = NewPayment("us");

            await using (var producer = await RunningBus.StartAsync(transport.Broker, cfg => cfg.UseFieldEncryption(keys)))
            {
                await producer.Send("payments", eu);
                await producer.Send("payments", us);
            }

            var routed = await TakeAsync(transport.Broker, "payments-us");
            Assert.That(routed, Is.Not.Null, "the router did not route by the plaintext region");
            var json = MessageOf(routed!.Body.ToArray());
            Assert.That(json["paymentId"]!.GetValue<Guid>(), Is.EqualTo(us.PaymentId));
            Assert.That(json["cardNumber"]!.GetValue<string>(), Does.StartWith(FieldEncryption.Prefix), "the router should forward the ciphertext untouched");
            AssertAbsent(routed.Body.ToArray(), Encoding.UTF8.GetBytes(Card), "the card number", "the routed message");
            var captured = await harness.WaitFor("payments-eu");
            Assert.That(captured.Select(c => c.Message), Is.EquivalentTo(new[] { eu }), "the consumer with the key should see the routed payment in plaintext");
        }
    }

    [TestFixture]
    [Category("Integration")]
    public sealed class When_an_encrypted_field_is_tampered
    {
        [Test]
        public async Task Should_move_the_message_to_the_error_queue_naming_the_field()
        {
            await using var broker = await (await IntegrationInfrastructure.GetAsync()).CreateVirtualHostAsync("fields");
            var keys = Aes("a", ("a", KekA));
            var seen = new Seen<Payment>();
            await using var consumer = await RunningBus.StartAsync(broker, cfg => cfg.ReceiveEndpoint("payments", e =>
            {
                e.UseFieldEncryption(keys);
                seen.Handle(e);
            }));
            await using (var producer = await RunningBus.StartAsync(broker, cfg => cfg.UseFieldEncryption(keys)))
                await producer.Send("payments-intercepted", NewPayment());
            var intercepted = await TakeAsync(broker, "payments-intercepted");
            var root = JsonNode.Parse(intercepted!.Body.ToArray())!;
            var card = root["message"]!["cardNumber"]!.GetValue<string>();
            var ciphertext = Convert.FromBase64String(card[(card.LastIndexOf(':') + 1)..]);
            ciphertext[^1] ^= 0x01;
            root["message"]!["cardNumber"] = card[..(card.LastIndexOf(':') + 1)] + Convert.ToBase64String(ciphertext);

            await PublishRawAsync(broker, "payments", intercepted.BasicProperties, Encoding.UTF8.GetBytes(root.ToJsonString()));

            var failed = await TakeAsync(broker, "payments_error");
            Assert.That(failed, Is.Not.Null, "the tampered message was not moved to the error queue");
            Assert.That(Header(failed!, "MT-Fault-Message"), Does.Contain("Encrypted field 'cardNumber' cannot be decrypted").And.Contain("failed authentication with key 'a'"));
            var stored = failed!.Body.ToArray().Concat(Encoding.UTF8.GetBytes(AllHeaders(failed))).ToArray();
            AssertAbsent(stored, Encoding.UTF8.GetBytes(Card), "the card number", "the error queue message");
            AssertAbsent(stored, Encoding.UTF8.GetBytes(Iban), "the IBAN", "the error queue message");
            Assert.That(seen.All, Is.Empty);
        }
    }
}
