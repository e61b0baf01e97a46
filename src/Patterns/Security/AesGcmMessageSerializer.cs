using System.Net.Mime;
using System.Runtime.Serialization;
using System.Security.Cryptography;
using System.Text;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Security;

/// <summary>
/// What encrypted messages look like on the wire (<see cref="EncryptionConfigurationExtensions.UseAesGcmEncryption(IBusFactoryConfigurator, EncryptionKeyRing)"/>),
/// for consumers and tools outside .NET.
/// </summary>
public static class MessageEncryption
{
    /// <summary>Content type of encrypted messages.</summary>
    public const string ContentType = "application/vnd.integration.aesgcm+json";

    /// <summary>Transport header naming the key a message was encrypted with.</summary>
    public const string KeyIdHeader = "Integration-Encryption-Key-Id";

    /// <summary>Content type of envelope-encrypted messages (a data key per message, see <see cref="EnvelopeEncryption"/>).</summary>
    public const string EnvelopeContentType = "application/vnd.integration.envelope+json";

    /// <summary>
    /// Transport header of field-encrypted messages listing the encrypted JSON paths (e.g. <c>cardNumber,payer.iban</c>);
    /// informational, the values themselves say they are ciphertext.
    /// </summary>
    public const string EncryptedFieldsHeader = "Integration-Encrypted-Fields";
}

/// <summary>
/// Message-level encryption: the whole MassTransit JSON envelope (message, headers, addresses) is sealed with AES-GCM.
/// Body on the wire: <c>nonce (12 bytes) | tag (16 bytes) | ciphertext</c>; the key id travels in the
/// <see cref="KeyIdHeader"/> transport header and is authenticated as associated data, so a message cannot be replayed
/// under another key id. A message that cannot be decrypted (no key id, unknown key, tampered body) fails
/// deserialization and MassTransit moves it to the endpoint's <c>_error</c> queue with the reason in its fault headers.
/// </summary>
internal sealed class AesGcmMessageSerializer : IMessageSerializer, IMessageDeserializer
{
    /// <summary>Content type of encrypted messages.</summary>
    public const string ContentTypeValue = MessageEncryption.ContentType;

    /// <summary>Transport header naming the key a message was encrypted with.</summary>
    public const string KeyIdHeader = MessageEncryption.KeyIdHeader;

    const int NonceSize = 12;
    const int TagSize = 16;

    readonly EncryptionKeyRing _keys;
    readonly Compression.CompressionOptions? _compression;
    readonly SystemTextJsonMessageSerializer _json = new(SystemTextJsonMessageSerializer.JsonContentType);

    /// <summary>
    /// Creates a serializer over <paramref name="keys"/>; with <paramref name="compression"/>, the JSON is compressed before
    /// it is sealed and decompressed after it is opened (ciphertext does not compress).
    /// </summary>
    public AesGcmMessageSerializer(EncryptionKeyRing keys, Compression.CompressionOptions? compression = null)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _keys = keys;
        _compression = compression;
    }

    /// <inheritdoc cref="IMessageSerializer.ContentType" />
    public ContentType ContentType { get; } = new(ContentTypeValue);

    /// <inheritdoc />
    public MessageBody GetMessageBody<T>(SendContext<T> context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Headers.Set(KeyIdHeader, _keys.CurrentKeyId);
        var plain = _json.GetMessageBody(context).GetBytes();
        if (_compression is not null)
            plain = Compression.ContentEncodings.Encode(plain, context, _compression);
        context.ContentType = new ContentType(ContentTypeValue);
        return new BytesMessageBody(Seal(plain, _keys.CurrentKeyId, _keys.CurrentKey));
    }

    /// <inheritdoc />
    public ConsumeContext Deserialize(ReceiveContext receiveContext)
    {
        ArgumentNullException.ThrowIfNull(receiveContext);
        var serializerContext = Deserialize(receiveContext.Body, receiveContext.TransportHeaders, receiveContext.InputAddress,
            Compression.ContentEncodings.Read(receiveContext));
        return new BodyConsumeContext(receiveContext, serializerContext);
    }

    /// <inheritdoc />
    public SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress = null) =>
        Deserialize(body, headers, destinationAddress, headers?.Get<string>(Compression.MessageCompression.ContentEncodingHeader));

    SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress, string? contentEncoding)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(headers);
        var keyId = headers.Get<string>(KeyIdHeader);
        if (string.IsNullOrEmpty(keyId))
            throw new SerializationException($"Encrypted message has no {KeyIdHeader} header; it cannot be decrypted");
        if (!_keys.TryGetKey(keyId, out var key))
            throw new SerializationException($"Encrypted message names key '{keyId}', which this endpoint does not have (keys: {string.Join(", ", _keys.KeyIds)})");

        var plain = Open(body.GetBytes(), keyId, key);
        if (_compression is not null)
            plain = Compression.ContentEncodings.Decode(plain, contentEncoding, _compression);
        return _json.Deserialize(new BytesMessageBody(plain), headers, destinationAddress);
    }

    /// <inheritdoc />
    public MessageBody GetMessageBody(string text) => new BytesMessageBody(Convert.FromBase64String(text));

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scope = context.CreateScope("aes-gcm");
        scope.Add("contentType", ContentTypeValue);
        scope.Add("currentKeyId", _keys.CurrentKeyId);
        scope.Add("keyIds", string.Join(",", _keys.KeyIds));
        if (_compression?.Compress is { } encoding)
            scope.Add("compress", Compression.MessageCompression.Name(encoding));
    }

    static byte[] Seal(byte[] plain, string keyId, byte[] key)
    {
        var output = new byte[NonceSize + TagSize + plain.Length];
        var nonce = output.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plain, output.AsSpan(NonceSize + TagSize), output.AsSpan(NonceSize, TagSize), Encoding.ASCII.GetBytes(keyId));
        return output;
    }

    static byte[] Open(byte[] sealedBody, string keyId, byte[] key)
    {
        if (sealedBody.Length < NonceSize + TagSize)
            throw new SerializationException($"Encrypted message body is {sealedBody.Length} bytes, shorter than its nonce and tag");
        var plain = new byte[sealedBody.Length - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(sealedBody.AsSpan(0, NonceSize), sealedBody.AsSpan(NonceSize + TagSize), sealedBody.AsSpan(NonceSize, TagSize), plain,
                Encoding.ASCII.GetBytes(keyId));
        }
        catch (AuthenticationTagMismatchException exception)
        {
            // Not chained: MassTransit's fault headers carry the innermost exception's message, and ours is the reason.
            throw new SerializationException(
                $"Encrypted message failed authentication with key '{keyId}': the body was altered or encrypted with another key ({exception.Message})");
        }

        return plain;
    }
}

/// <summary>Registers <see cref="AesGcmMessageSerializer"/> with MassTransit's serialization.</summary>
internal sealed class AesGcmSerializerFactory(EncryptionKeyRing keys, Compression.CompressionOptions? compression = null) : ISerializerFactory
{
    readonly AesGcmMessageSerializer _serializer = new(keys, compression);

    /// <inheritdoc />
    public ContentType ContentType => _serializer.ContentType;

    /// <inheritdoc />
    public IMessageSerializer CreateSerializer() => _serializer;

    /// <inheritdoc />
    public IMessageDeserializer CreateDeserializer() => _serializer;
}
