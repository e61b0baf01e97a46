using MassTransit;

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
}
