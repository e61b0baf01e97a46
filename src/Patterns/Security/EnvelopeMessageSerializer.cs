using System.Net.Mime;
using System.Runtime.Serialization;
using System.Security.Cryptography;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Security;

/// <summary>
/// Envelope encryption as a MassTransit serializer: every message is sealed with a fresh random 256-bit AES-GCM data key,
/// and that data key travels in a header, wrapped by the current key-encryption key of an <see cref="IKeyProvider"/>.
/// Body on the wire: <c>nonce (12) | tag (16) | ciphertext</c> of the whole MassTransit JSON envelope; headers
/// <see cref="EnvelopeEncryption.KeyIdHeader"/> (the KEK's id) and <see cref="EnvelopeEncryption.WrappedKeyHeader"/>
/// (the wrapped data key, Base64). With an RSA public key as current KEK a producer seals what it cannot open itself.
/// A message that cannot be opened fails deserialization naming only the key id (never key material or plaintext), and
/// MassTransit moves it, as received, to the endpoint's <c>_error</c> queue with the reason in <c>MT-Fault-Message</c>.
/// </summary>
internal sealed class EnvelopeMessageSerializer : IMessageSerializer, IMessageDeserializer
{
    readonly IKeyProvider _keys;
    readonly SystemTextJsonMessageSerializer _json = new(SystemTextJsonMessageSerializer.JsonContentType);

    public EnvelopeMessageSerializer(IKeyProvider keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _keys = keys;
    }

    /// <inheritdoc cref="IMessageSerializer.ContentType" />
    public ContentType ContentType { get; } = new(MessageEncryption.EnvelopeContentType);

    /// <inheritdoc />
    public MessageBody GetMessageBody<T>(SendContext<T> context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        var kek = _keys.Find(_keys.CurrentKeyId)
                  ?? throw new InvalidOperationException($"The key provider has no current key '{_keys.CurrentKeyId}'");
        var dataKey = RandomNumberGenerator.GetBytes(32);
        try
        {
            // Headers first: the transport copies them when the body is taken.
            context.Headers.Set(EnvelopeEncryption.KeyIdHeader, kek.Id);
            context.Headers.Set(EnvelopeEncryption.WrappedKeyHeader, Convert.ToBase64String(kek.Wrap(dataKey)));
            var plain = _json.GetMessageBody(context).GetBytes();
            context.ContentType = ContentType;
            return new BytesMessageBody(EnvelopeEncryption.Seal(dataKey, plain));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <inheritdoc />
    public ConsumeContext Deserialize(ReceiveContext receiveContext)
    {
        ArgumentNullException.ThrowIfNull(receiveContext);
        return new BodyConsumeContext(receiveContext, Deserialize(receiveContext.Body, receiveContext.TransportHeaders, receiveContext.InputAddress));
    }

    /// <inheritdoc />
    public SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(headers);
        var plain = Open(_keys, body.GetBytes(), headers.Get<string>(EnvelopeEncryption.KeyIdHeader), headers.Get<string>(EnvelopeEncryption.WrappedKeyHeader));
        return _json.Deserialize(new BytesMessageBody(plain), headers, destinationAddress);
    }

    /// <summary>Opens a sealed body; every failure is a <see cref="SerializationException"/> naming the key id and nothing secret.</summary>
    internal static byte[] Open(IKeyProvider keys, byte[] body, string? keyId, string? wrappedKey)
    {
        if (string.IsNullOrEmpty(keyId))
            throw new SerializationException($"Encrypted message has no {EnvelopeEncryption.KeyIdHeader} header; it cannot be decrypted");
        if (string.IsNullOrEmpty(wrappedKey))
            throw new SerializationException($"Encrypted message (key '{keyId}') has no {EnvelopeEncryption.WrappedKeyHeader} header; it cannot be decrypted");
        byte[] wrapped;
        try
        {
            wrapped = Convert.FromBase64String(wrappedKey);
        }
        catch (FormatException)
        {
            throw new SerializationException($"Encrypted message (key '{keyId}'): its {EnvelopeEncryption.WrappedKeyHeader} header is not Base64");
        }

        if (keys.Find(keyId) is null)
            throw new SerializationException($"Encrypted message names key '{keyId}', which this endpoint does not have (current key: {keys.CurrentKeyId})");
        try
        {
            return EnvelopeEncryption.Open(keys, new SealedMessage(keyId, wrapped, body));
        }
        catch (CryptographicException exception) when (exception.InnerException is not null)
        {
            // Not chained: MassTransit's fault headers carry the innermost exception's message, and ours is the reason.
            throw new SerializationException($"Encrypted message failed to decrypt: {exception.Message}");
        }
        catch (CryptographicException exception)
        {
            // AES-GCM says only that the tag did not match; its message holds no key or plaintext bytes.
            throw new SerializationException(exception is AuthenticationTagMismatchException
                ? $"Encrypted message failed authentication with key '{keyId}': the body or its wrapped key was altered"
                : $"Encrypted message failed to decrypt with key '{keyId}': {exception.Message}");
        }
    }

    /// <inheritdoc />
    public MessageBody GetMessageBody(string text) => new BytesMessageBody(Convert.FromBase64String(text));

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scope = context.CreateScope("envelope-encryption");
        scope.Add("contentType", MessageEncryption.EnvelopeContentType);
        scope.Add("currentKeyId", _keys.CurrentKeyId);
    }
}

/// <summary>Registers <see cref="EnvelopeMessageSerializer"/> with MassTransit's serialization.</summary>
internal sealed class EnvelopeSerializerFactory(IKeyProvider keys) : ISerializerFactory
{
    readonly EnvelopeMessageSerializer _serializer = new(keys);

    /// <inheritdoc />
    public ContentType ContentType => _serializer.ContentType;

    /// <inheritdoc />
    public IMessageSerializer CreateSerializer() => _serializer;

    /// <inheritdoc />
    public IMessageDeserializer CreateDeserializer() => _serializer;
}
