using Integration.Patterns.Security;
using MassTransit;
using Microsoft.Extensions.Configuration;
using NUnit.Framework;
using static Integration.Patterns.Tests.Security.Crypto;

namespace Integration.Patterns.Tests.Security;

/// <summary>Keys from Integration:Encryption: every mistake fails at start naming the full configuration key, never the key.</summary>
public static class EncryptionKeys_Specs
{
    static IKeyProvider Read(params (string Key, string? Value)[] settings) =>
        EncryptionKeys.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build());

    static string Failure(params (string Key, string? Value)[] settings) =>
        Assert.Throws<ArgumentException>(() => Read(settings))!.Message;

    [TestFixture]
    public sealed class When_the_keys_are_valid
    {
        [Test]
        public void Should_read_Base64_keys_key_files_and_RSA_key_files()
        {
            var (publicPem, privatePem) = RsaPair();
            var dir = Directory.CreateTempSubdirectory("keys").FullName;
            File.WriteAllText(Path.Combine(dir, "public.pem"), publicPem);
            File.WriteAllText(Path.Combine(dir, "private.pem"), privatePem);
            File.WriteAllBytes(Path.Combine(dir, "kek.bin"), KekB);
            try
            {
                var keys = Read(("Integration:Encryption:CurrentKeyId", "2026-11"),
                    ("Integration:Encryption:Keys:2026-05", Convert.ToBase64String(KekA)),
                    ("Integration:Encryption:Keys:2026-11:KeyFile", Path.Combine(dir, "kek.bin")),
                    ("Integration:Encryption:Keys:rsa-out:PublicKeyFile", Path.Combine(dir, "public.pem")),
                    ("Integration:Encryption:Keys:rsa-in:PrivateKeyFile", Path.Combine(dir, "private.pem")));

                Assert.Multiple(() =>
                {
                    Assert.That(keys.CurrentKeyId, Is.EqualTo("2026-11"));
                    Assert.That(keys.Find("2026-05")!.CanUnwrap, Is.True);
                    Assert.That(keys.Find("rsa-out")!.CanUnwrap, Is.False, "a public key only wraps");
                    Assert.That(keys.Find("rsa-in")!.CanUnwrap, Is.True);
                    Assert.That(keys.ToString(), Does.Not.Contain(Convert.ToBase64String(KekA)).And.Contain("2026-05"));
                });
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    [TestFixture]
    public sealed class When_a_key_is_wrong
    {
        [Test]
        public void Should_name_the_key_that_is_not_Base64()
        {
            var message = Failure(("Integration:Encryption:CurrentKeyId", "k1"), ("Integration:Encryption:Keys:k1", "not base64!"));
            Assert.That(message, Does.Contain("Integration:Encryption:Keys:k1: not valid Base64"));
        }

        [Test]
        public void Should_name_the_key_of_the_wrong_length_without_showing_it()
        {
            var short16 = Convert.ToBase64String(KekA[..16]);
            var message = Failure(("Integration:Encryption:CurrentKeyId", "k1"), ("Integration:Encryption:Keys:k1", short16));
            Assert.That(message, Does.Contain("Integration:Encryption:Keys:k1: an AES key-encryption key must be 32 bytes, not 16"));
            Assert.That(message, Does.Not.Contain(short16));
        }

        [Test]
        public void Should_name_an_unknown_current_key_id()
        {
            var message = Failure(("Integration:Encryption:CurrentKeyId", "k2"), ("Integration:Encryption:Keys:k1", Convert.ToBase64String(KekA)));
            Assert.That(message, Does.Contain("Integration:Encryption:CurrentKeyId: 'k2' is not one of the keys (k1)"));
        }

        [Test]
        public void Should_name_a_missing_key_file()
        {
            var message = Failure(("Integration:Encryption:CurrentKeyId", "rsa"), ("Integration:Encryption:Keys:rsa:PrivateKeyFile", "/nowhere/private.pem"));
            Assert.That(message, Does.Contain("Integration:Encryption:Keys:rsa:PrivateKeyFile: no file at '/nowhere/private.pem'"));
        }

        [Test]
        public void Should_refuse_a_public_key_where_the_private_key_is_needed()
        {
            var (publicPem, _) = RsaPair();
            var file = Path.GetTempFileName();
            File.WriteAllText(file, publicPem);
            try
            {
                var message = Failure(("Integration:Encryption:CurrentKeyId", "rsa"), ("Integration:Encryption:Keys:rsa:PrivateKeyFile", file));
                Assert.That(message, Does.Contain("Integration:Encryption:Keys:rsa:PrivateKeyFile").And.Contain("holds a public key"));
            }
            finally
            {
                File.Delete(file);
            }
        }

        [Test]
        public void Should_list_every_mistake_at_once()
        {
            var message = Failure(("Integration:Encryption:Keys:a", "???"), ("Integration:Encryption:Keys:b:KeyFile", "/nowhere/kek"));
            Assert.That(message, Does.Contain("Integration:Encryption:Keys:a: not valid Base64")
                .And.Contain("Integration:Encryption:Keys:b:KeyFile: no file at '/nowhere/kek'")
                .And.Contain("Integration:Encryption:CurrentKeyId: required"));
        }

        [Test]
        public void Should_stop_the_bus_at_configuration()
        {
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["Integration:Encryption:CurrentKeyId"] = "k1", ["Integration:Encryption:Keys:k1"] = "not base64!",
            }).Build();
            Assert.That(() => Bus.Factory.CreateUsingInMemory(cfg => cfg.UseEnvelopeEncryption(configuration)),
                Throws.ArgumentException.With.Message.Contains("Integration:Encryption:Keys:k1: not valid Base64"));
        }
    }
}
