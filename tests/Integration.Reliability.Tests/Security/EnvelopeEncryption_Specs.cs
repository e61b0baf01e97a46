using System.Security.Cryptography;
using System.Text;
using Integration.Patterns.Security;
using NUnit.Framework;

namespace Integration.Reliability.Tests.Security;

/// <summary>
/// Envelope encryption (<see cref="EnvelopeEncryption"/>): a data key per message wrapped by a key-encryption key from an
/// <see cref="IKeyProvider"/>; rotation without re-encrypting what is stored; RSA-OAEP so a producer needs only a public
/// key; keys from configuration and files; no key material or plaintext in what is sealed or in the errors.
/// </summary>
[TestFixture]
public sealed class EnvelopeEncryption_Specs
{
    static readonly byte[] Secret = Encoding.UTF8.GetBytes("""{"cardNumber":"4111111111111111","owner":"Ada"}""");

    static AesKeyEncryptionKey Aes(string id) => new(id, RandomNumberGenerator.GetBytes(32));

    [Test]
    public void When_a_message_is_sealed_should_open_with_the_same_provider_and_carry_neither_plaintext_nor_key()
    {
        var kek = RandomNumberGenerator.GetBytes(32);
        var keys = new StaticKeyProvider("k1", [new AesKeyEncryptionKey("k1", kek)]);

        var sealedMessage = EnvelopeEncryption.Seal(keys, Secret);

        Assert.That(EnvelopeEncryption.Open(keys, sealedMessage), Is.EqualTo(Secret));
        Assert.That(sealedMessage.KeyId, Is.EqualTo("k1"));
        var stored = sealedMessage.Ciphertext.Concat(sealedMessage.WrappedKey).ToArray();
        Assert.That(Contains(stored, Encoding.UTF8.GetBytes("4111111111111111")), Is.False, "plaintext in the sealed bytes");
        Assert.That(Contains(stored, kek), Is.False, "the key-encryption key in the sealed bytes");
        Assert.That(keys.ToString(), Does.Contain("k1").And.Not.Contain(Convert.ToBase64String(kek)));
    }

    [Test]
    public void When_two_messages_are_sealed_should_use_a_data_key_of_their_own()
    {
        var keys = new StaticKeyProvider("k1", [Aes("k1")]);

        var first = EnvelopeEncryption.Seal(keys, Secret);
        var second = EnvelopeEncryption.Seal(keys, Secret);

        Assert.That(first.WrappedKey, Is.Not.EqualTo(second.WrappedKey));
        Assert.That(first.Ciphertext, Is.Not.EqualTo(second.Ciphertext));
    }

    [Test]
    public void When_the_key_encryption_key_is_rotated_should_open_stored_messages_without_re_encrypting_them()
    {
        var k1 = Aes("k1");
        var stored = EnvelopeEncryption.Seal(new StaticKeyProvider("k1", [k1]), Secret);

        var rotated = new StaticKeyProvider("k2", [k1, Aes("k2")]);
        var fresh = EnvelopeEncryption.Seal(rotated, Secret);

        Assert.That(fresh.KeyId, Is.EqualTo("k2"), "new messages use the new key");
        Assert.That(EnvelopeEncryption.Open(rotated, stored), Is.EqualTo(Secret), "the stored message, unchanged, still opens");
        var retired = new StaticKeyProvider("k2", [rotated.Find("k2")!]);
        Assert.That(() => EnvelopeEncryption.Open(retired, stored), Throws.InstanceOf<CryptographicException>().With.Message.Contains("'k1'"),
            "once k1 is removed, its messages fail naming the key id");
    }

    [Test]
    public void When_the_producer_has_only_the_public_key_should_seal_but_only_the_private_key_opens()
    {
        using var rsa = RSA.Create(2048);
        var producer = new StaticKeyProvider("rsa1", [RsaKeyEncryptionKey.FromPem("rsa1", rsa.ExportSubjectPublicKeyInfoPem())]);
        var consumer = new StaticKeyProvider("rsa1", [RsaKeyEncryptionKey.FromPem("rsa1", rsa.ExportPkcs8PrivateKeyPem())]);

        var sealedMessage = EnvelopeEncryption.Seal(producer, Secret);

        Assert.That(EnvelopeEncryption.Open(consumer, sealedMessage), Is.EqualTo(Secret));
        Assert.That(() => EnvelopeEncryption.Open(producer, sealedMessage), Throws.InstanceOf<CryptographicException>().With.Message.Contains("public key"));
    }

    [Test]
    public void When_the_ciphertext_or_wrapped_key_is_tampered_should_refuse_to_open()
    {
        var keys = new StaticKeyProvider("k1", [Aes("k1")]);
        var sealedMessage = EnvelopeEncryption.Seal(keys, Secret);
        var body = sealedMessage.Ciphertext.ToArray();
        body[^1] ^= 1;
        var wrapped = sealedMessage.WrappedKey.ToArray();
        wrapped[^1] ^= 1;

        Assert.That(() => EnvelopeEncryption.Open(keys, sealedMessage with { Ciphertext = body }), Throws.InstanceOf<CryptographicException>());
        Assert.That(() => EnvelopeEncryption.Open(keys, sealedMessage with { WrappedKey = wrapped }),
            Throws.InstanceOf<CryptographicException>().With.Message.Contains("does not unwrap with key 'k1'"));
        Assert.That(() => EnvelopeEncryption.Open(keys, sealedMessage with { Ciphertext = [1, 2, 3] }), Throws.InstanceOf<CryptographicException>());
    }

    [Test]
    public void When_keys_come_from_configuration_and_files_should_build_the_provider_and_name_a_bad_setting()
    {
        using var rsa = RSA.Create(2048);
        var pem = Path.GetTempFileName();
        File.WriteAllText(pem, rsa.ExportSubjectPublicKeyInfoPem());
        try
        {
            var options = new EnvelopeEncryptionOptions
            {
                CurrentKeyId = "rsa1",
                Keys = { ["old"] = new EnvelopeKeyOptions { Aes = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)) }, ["rsa1"] = new EnvelopeKeyOptions { PemFile = pem } },
            };

            var provider = StaticKeyProvider.FromOptions(options);

            Assert.That(provider.Find("rsa1")!.CanUnwrap, Is.False);
            Assert.That(provider.Find("old")!.CanUnwrap, Is.True);
            Assert.That(() => StaticKeyProvider.FromOptions(new EnvelopeEncryptionOptions { CurrentKeyId = "x", Keys = { ["x"] = new EnvelopeKeyOptions { Aes = "not base64!" } } }),
                Throws.ArgumentException.With.Message.Contains("Integration:EnvelopeEncryption:Keys:x:Aes"));
            Assert.That(() => StaticKeyProvider.FromOptions(new EnvelopeEncryptionOptions { CurrentKeyId = "x", Keys = { ["x"] = new EnvelopeKeyOptions { PemFile = "/nonexistent.pem" } } }),
                Throws.ArgumentException.With.Message.Contains("Integration:EnvelopeEncryption:Keys:x:PemFile").And.Message.Contains("no file"));
            Assert.That(() => StaticKeyProvider.FromOptions(new EnvelopeEncryptionOptions { CurrentKeyId = "missing", Keys = options.Keys }),
                Throws.ArgumentException.With.Message.Contains("CurrentKeyId"));
        }
        finally
        {
            File.Delete(pem);
        }
    }

    static bool Contains(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;
}
