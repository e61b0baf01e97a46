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
