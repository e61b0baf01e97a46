using MassTransit;
using Microsoft.Extensions.Configuration;

namespace Integration.Patterns.Security;

/// <summary>Switches message-level AES-GCM encryption on for a bus or a receive endpoint.</summary>
public static class EncryptionConfigurationExtensions
{
    /// <summary>
    /// Every message this bus sends or publishes is encrypted with the ring's current key, and encrypted messages are
    /// decrypted on every endpoint. Plain JSON messages are still accepted (so producers can be switched one at a time);
    /// use <see cref="UseAesGcmEncryption(IReceiveEndpointConfigurator, EncryptionKeyRing, bool)"/> with
    /// <c>requireEncrypted: true</c> on endpoints that must only accept encrypted messages.
    /// </summary>
    public static void UseAesGcmEncryption(this IBusFactoryConfigurator configurator, EncryptionKeyRing keys)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new AesGcmSerializerFactory(keys);
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory);
    }

    /// <summary>
    /// As <see cref="UseAesGcmEncryption(IBusFactoryConfigurator, EncryptionKeyRing)"/>, with compression: a body over
    /// the threshold is compressed, then encrypted; a received one decrypted, then decompressed (its content encoding
    /// names the codec). A body that inflates past the limit or is corrupt goes to the <c>_error</c> queue with the reason.
    /// </summary>
    /// <exception cref="ArgumentException">A compression option is out of range; the message names it.</exception>
    public static void UseAesGcmEncryption(this IBusFactoryConfigurator configurator, EncryptionKeyRing keys, Compression.CompressionOptions compression)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(compression);
        var factory = new AesGcmSerializerFactory(keys, compression.Snapshot());
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory);
    }

    /// <summary>
    /// As <see cref="UseAesGcmEncryption(IReceiveEndpointConfigurator, EncryptionKeyRing, bool)"/>, with compression
    /// inside the encryption (compress, then encrypt; decrypt, then decompress).
    /// </summary>
    /// <exception cref="ArgumentException">A compression option is out of range; the message names it.</exception>
    public static void UseAesGcmEncryption(this IReceiveEndpointConfigurator configurator, EncryptionKeyRing keys, Compression.CompressionOptions compression,
        bool requireEncrypted = false)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(compression);
        var factory = new AesGcmSerializerFactory(keys, compression.Snapshot());
        if (requireEncrypted)
            configurator.ClearSerialization();
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: requireEncrypted);
    }

    /// <summary>
    /// Decrypts on this receive endpoint and encrypts what its consumers send. With <paramref name="requireEncrypted"/>,
    /// the endpoint accepts nothing else: a plain message fails with "No deserializer was registered for the message
    /// content type" and goes to the endpoint's <c>_error</c> queue.
    /// </summary>
    public static void UseAesGcmEncryption(this IReceiveEndpointConfigurator configurator, EncryptionKeyRing keys, bool requireEncrypted = false)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new AesGcmSerializerFactory(keys);
        if (requireEncrypted)
            configurator.ClearSerialization();
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: requireEncrypted);
    }

    /// <summary>
    /// Envelope encryption for everything this bus sends or publishes: a fresh data key per message, wrapped by the
    /// provider's current key-encryption key (its id in <c>Integration-Encryption-Key-Id</c>, the wrapped key in
    /// <c>Integration-Encryption-Wrapped-Key</c>). Envelope-encrypted messages are decrypted on every endpoint with the
    /// key they name, so after a rotation old messages still open while the old key is kept; plain JSON is still accepted
    /// (see the receive endpoint overload with <c>requireEncrypted</c>). With only an RSA public key the bus encrypts and
    /// cannot decrypt: a message it receives encrypted goes to <c>_error</c> ("is a public key here").
    /// </summary>
    public static void UseEnvelopeEncryption(this IBusFactoryConfigurator configurator, IKeyProvider keys)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new EnvelopeSerializerFactory(keys);
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory);
    }

    /// <summary>
    /// As <see cref="UseEnvelopeEncryption(IBusFactoryConfigurator, IKeyProvider)"/>, with the keys read from
    /// <paramref name="section"/> of <paramref name="configuration"/> (see <see cref="EncryptionKeys"/>): the bus does not
    /// start when a key is wrong, and the error names the configuration key.
    /// </summary>
    /// <exception cref="ArgumentException">The keys are not valid; the message lists every mistake by its configuration key.</exception>
    public static void UseEnvelopeEncryption(this IBusFactoryConfigurator configurator, IConfiguration configuration, string section = EncryptionKeys.Section)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        configurator.UseEnvelopeEncryption(EncryptionKeys.FromConfiguration(configuration, section));
    }

    /// <summary>
    /// Envelope encryption on this receive endpoint (decrypts what arrives, encrypts what its consumers send). With
    /// <paramref name="requireEncrypted"/>, the endpoint accepts nothing else: a plain message goes to its <c>_error</c> queue.
    /// </summary>
    public static void UseEnvelopeEncryption(this IReceiveEndpointConfigurator configurator, IKeyProvider keys, bool requireEncrypted = false)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new EnvelopeSerializerFactory(keys);
        if (requireEncrypted)
            configurator.ClearSerialization();
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: requireEncrypted);
    }

    /// <summary>
    /// Field-level encryption for everything this bus sends or publishes: properties marked <see cref="EncryptedAttribute"/>
    /// are encrypted in the JSON body (see <see cref="FieldEncryption"/>), the rest stays plaintext and the content type
    /// stays MassTransit's JSON, so routers without keys still route on it. Encrypted fields are decrypted on every
    /// endpoint of this bus; one that cannot be decrypted sends the message to <c>_error</c> naming the field and key id.
    /// </summary>
    /// <param name="configurator">The bus.</param>
    /// <param name="keys">The key-encryption keys.</param>
    /// <param name="fields">Properties to encrypt besides the marked ones, e.g. <c>f =&gt; f.Encrypt&lt;Invoice&gt;(i =&gt; i.Iban)</c>.</param>
    public static void UseFieldEncryption(this IBusFactoryConfigurator configurator, IKeyProvider keys, Action<IFieldEncryptionConfigurator>? fields = null)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new FieldEncryptionSerializerFactory(keys, FieldEncryptionConfigurator.Build(fields));
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: true);
    }

    /// <summary>As <see cref="UseFieldEncryption(IBusFactoryConfigurator, IKeyProvider, Action{IFieldEncryptionConfigurator})"/>, with the keys from configuration (see <see cref="EncryptionKeys"/>).</summary>
    /// <exception cref="ArgumentException">The keys are not valid; the message lists every mistake by its configuration key.</exception>
    public static void UseFieldEncryption(this IBusFactoryConfigurator configurator, IConfiguration configuration, Action<IFieldEncryptionConfigurator>? fields = null,
        string section = EncryptionKeys.Section)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        configurator.UseFieldEncryption(EncryptionKeys.FromConfiguration(configuration, section), fields);
    }

    /// <summary>Field-level encryption on this receive endpoint only: its consumers see the marked properties in plaintext, and what they send is encrypted.</summary>
    public static void UseFieldEncryption(this IReceiveEndpointConfigurator configurator, IKeyProvider keys, Action<IFieldEncryptionConfigurator>? fields = null)
    {
        ArgumentNullException.ThrowIfNull(configurator);
        ArgumentNullException.ThrowIfNull(keys);
        var factory = new FieldEncryptionSerializerFactory(keys, FieldEncryptionConfigurator.Build(fields));
        configurator.AddSerializer(factory, isSerializer: true);
        configurator.AddDeserializer(factory, isDefault: true);
    }
}
