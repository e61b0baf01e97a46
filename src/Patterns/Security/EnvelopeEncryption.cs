using System.Security.Cryptography;

namespace Integration.Patterns.Security;

/// <summary>
/// A key-encryption key (KEK): wraps and unwraps the per-message data keys of <see cref="EnvelopeEncryption"/>. Key
/// material never appears in <see cref="object.ToString"/>.
/// </summary>
public interface IKeyEncryptionKey
{
    /// <summary>The id carried with every wrapped data key.</summary>
    string Id { get; }

    /// <summary>True when this key can unwrap (an RSA public key can only wrap).</summary>
    bool CanUnwrap { get; }

    /// <summary>Encrypts <paramref name="dataKey"/>.</summary>
    byte[] Wrap(ReadOnlySpan<byte> dataKey);

    /// <summary>Decrypts a wrapped data key.</summary>
    /// <exception cref="CryptographicException">Tampered, or wrapped with another key.</exception>
    /// <exception cref="InvalidOperationException">The key can only wrap (a public key).</exception>
    byte[] Unwrap(ReadOnlySpan<byte> wrapped);
}

/// <summary>Where the key-encryption keys come from (configuration, a file, a key vault).</summary>
public interface IKeyProvider
{
    /// <summary>The key new messages are wrapped with.</summary>
    string CurrentKeyId { get; }

    /// <summary>The key with <paramref name="keyId"/>, or null when this provider does not have it.</summary>
    IKeyEncryptionKey? Find(string keyId);
}

/// <summary>A symmetric KEK (AES-256-GCM key wrap): whoever wraps can also unwrap.</summary>
public sealed class AesKeyEncryptionKey : IKeyEncryptionKey
{
    readonly byte[] _key;

    /// <summary>A KEK from 32 random bytes.</summary>
    public AesKeyEncryptionKey(string id, ReadOnlySpan<byte> key)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id);
        if (key.Length != 32)
            throw new ArgumentException($"key '{id}': an AES key-encryption key must be 32 bytes, not {key.Length}", nameof(key));
        Id = id;
        _key = key.ToArray();
    }

    /// <inheritdoc />
    public string Id { get; }

    /// <inheritdoc />
    public bool CanUnwrap => true;

    /// <inheritdoc />
    public byte[] Wrap(ReadOnlySpan<byte> dataKey) => EnvelopeEncryption.Seal(_key, dataKey);

    /// <inheritdoc />
    public byte[] Unwrap(ReadOnlySpan<byte> wrapped) => EnvelopeEncryption.Open(_key, wrapped);

    /// <inheritdoc />
    public override string ToString() => $"AesKeyEncryptionKey({Id})";
}

/// <summary>
/// An asymmetric KEK (RSA-OAEP-SHA256): a producer holding only the public key wraps; only the holder of the private key
/// unwraps.
/// </summary>
public sealed class RsaKeyEncryptionKey : IKeyEncryptionKey
{
    readonly RSAParameters _parameters;

    RsaKeyEncryptionKey(string id, RSAParameters parameters, bool hasPrivate)
    {
        Id = id;
        _parameters = parameters;
        CanUnwrap = hasPrivate;
    }

    /// <summary>From a PEM public key (<c>-----BEGIN PUBLIC KEY-----</c>) or private key (PKCS#1 or PKCS#8).</summary>
    /// <exception cref="ArgumentException">Not an RSA key of at least 2048 bits; the message names the key id.</exception>
    public static RsaKeyEncryptionKey FromPem(string id, string pem)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id);
        ArgumentException.ThrowIfNullOrWhiteSpace(pem);
        using var rsa = RSA.Create();
        try
        {
            rsa.ImportFromPem(pem);
        }
        catch (ArgumentException exception)
        {
            throw new ArgumentException($"key '{id}': not an RSA key in PEM ({exception.Message})", nameof(pem));
        }

        if (rsa.KeySize < 2048)
            throw new ArgumentException($"key '{id}': an RSA key-encryption key needs at least 2048 bits, not {rsa.KeySize}", nameof(pem));
        var hasPrivate = pem.Contains("PRIVATE KEY", StringComparison.Ordinal);
        return new RsaKeyEncryptionKey(id, rsa.ExportParameters(hasPrivate), hasPrivate);
    }

    /// <inheritdoc />
    public string Id { get; }

    /// <inheritdoc />
    public bool CanUnwrap { get; }

    /// <inheritdoc />
    public byte[] Wrap(ReadOnlySpan<byte> dataKey)
    {
        using var rsa = RSA.Create(_parameters);
        return rsa.Encrypt(dataKey.ToArray(), RSAEncryptionPadding.OaepSHA256);
    }

    /// <inheritdoc />
    public byte[] Unwrap(ReadOnlySpan<byte> wrapped)
    {
        if (!CanUnwrap)
            throw new InvalidOperationException($"key '{Id}' is a public key: it can wrap data keys but not unwrap them");
        using var rsa = RSA.Create(_parameters);
        return rsa.Decrypt(wrapped.ToArray(), RSAEncryptionPadding.OaepSHA256);
    }

    /// <inheritdoc />
    public override string ToString() => $"RsaKeyEncryptionKey({Id}, {(CanUnwrap ? "private" : "public")})";
}

/// <summary>A fixed set of key-encryption keys, e.g. built from configuration or files.</summary>
public sealed class StaticKeyProvider : IKeyProvider
{
    readonly Dictionary<string, IKeyEncryptionKey> _keys;

    /// <summary>A provider wrapping new data keys with <paramref name="currentKeyId"/>.</summary>
    /// <exception cref="ArgumentException">No keys, a duplicate id, or the current key is not among them.</exception>
    public StaticKeyProvider(string currentKeyId, IEnumerable<IKeyEncryptionKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _keys = new Dictionary<string, IKeyEncryptionKey>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (!_keys.TryAdd(key.Id, key))
                throw new ArgumentException($"Keys: the id '{key.Id}' is used more than once", nameof(keys));
        }

        if (string.IsNullOrWhiteSpace(currentKeyId) || !_keys.ContainsKey(currentKeyId))
            throw new ArgumentException($"CurrentKeyId: '{currentKeyId}' is not one of the keys ({string.Join(", ", _keys.Keys)})", nameof(currentKeyId));
        CurrentKeyId = currentKeyId;
    }

    /// <inheritdoc />
    public string CurrentKeyId { get; }

    /// <inheritdoc />
    public IKeyEncryptionKey? Find(string keyId) => _keys.GetValueOrDefault(keyId);

    /// <summary>
    /// From settings (section e.g. <c>Integration:EnvelopeEncryption</c>): <c>CurrentKeyId</c> and, per key id, either
    /// <c>Aes</c> (Base64, 32 bytes) or <c>PemFile</c> (an RSA public or private key file).
    /// </summary>
    /// <exception cref="ArgumentException">A key that is neither, not Base64, not found or not RSA; the message names the setting.</exception>
    public static StaticKeyProvider FromOptions(EnvelopeEncryptionOptions options, string section = EnvelopeEncryptionOptions.Section)
    {
        ArgumentNullException.ThrowIfNull(options);
        var keys = new List<IKeyEncryptionKey>();
        foreach (var (id, key) in options.Keys)
        {
            var name = $"{section}:Keys:{id}";
            if (!string.IsNullOrWhiteSpace(key.Aes) == !string.IsNullOrWhiteSpace(key.PemFile))
                throw new ArgumentException($"{name}: set exactly one of Aes (Base64) or PemFile (RSA key)", nameof(options));
            if (!string.IsNullOrWhiteSpace(key.Aes))
            {
                byte[] bytes;
                try
                {
                    bytes = Convert.FromBase64String(key.Aes);
                }
                catch (FormatException)
                {
                    throw new ArgumentException($"{name}:Aes: not valid Base64", nameof(options));
                }

                try
                {
                    keys.Add(new AesKeyEncryptionKey(id, bytes));
                }
                catch (ArgumentException exception)
                {
                    throw new ArgumentException($"{name}:Aes: {exception.Message}", nameof(options));
                }
            }
            else
            {
                if (!File.Exists(key.PemFile))
                    throw new ArgumentException($"{name}:PemFile: no file at '{key.PemFile}'", nameof(options));
                try
                {
                    keys.Add(RsaKeyEncryptionKey.FromPem(id, File.ReadAllText(key.PemFile!)));
                }
                catch (ArgumentException exception)
                {
                    throw new ArgumentException($"{name}:PemFile: {exception.Message}", nameof(options));
                }
            }
        }

        if (keys.Count == 0)
            throw new ArgumentException($"{section}:Keys: at least one key is required", nameof(options));
        try
        {
            return new StaticKeyProvider(options.CurrentKeyId, keys);
        }
        catch (ArgumentException exception)
        {
            throw new ArgumentException($"{section}:{exception.Message}", nameof(options));
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"StaticKeyProvider(current: {CurrentKeyId}, keys: {string.Join(", ", _keys.Keys)})";
}

/// <summary>Configuration shape of <see cref="StaticKeyProvider.FromOptions"/>.</summary>
public sealed class EnvelopeEncryptionOptions
{
    /// <summary>Default configuration section.</summary>
    public const string Section = "Integration:EnvelopeEncryption";

    /// <summary>The key new data keys are wrapped with.</summary>
    public string CurrentKeyId { get; set; } = "";

    /// <summary>Keys by id.</summary>
    public Dictionary<string, EnvelopeKeyOptions> Keys { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>One key-encryption key in configuration: <see cref="Aes"/> or <see cref="PemFile"/>.</summary>
public sealed class EnvelopeKeyOptions
{
    /// <summary>A 32-byte AES key, Base64. Never logged.</summary>
    public string? Aes { get; set; }

    /// <summary>Path of an RSA key in PEM: the public key for a producer, the private key for a consumer.</summary>
    public string? PemFile { get; set; }
}

/// <summary>A message sealed by <see cref="EnvelopeEncryption"/>: the ciphertext, and the data key wrapped by key <see cref="KeyId"/>.</summary>
/// <param name="KeyId">The key-encryption key (header <c>Integration-Encryption-Key-Id</c>).</param>
/// <param name="WrappedKey">The message's data key, wrapped (header <c>Integration-Encryption-Wrapped-Key</c>, Base64).</param>
/// <param name="Ciphertext">Nonce, tag and AES-256-GCM ciphertext of the body.</param>
public sealed record SealedMessage(string KeyId, byte[] WrappedKey, byte[] Ciphertext);

/// <summary>
/// Envelope encryption: every message gets a fresh random 256-bit data key (AES-GCM); the data key travels with the
/// message wrapped by a key-encryption key from an <see cref="IKeyProvider"/> (AES or RSA-OAEP), named by its id. Rotating
/// the key-encryption key changes only what new messages carry: stored messages keep their wrapped key and open as long as
/// the provider still has the old key — nothing is re-encrypted.
/// </summary>
public static class EnvelopeEncryption
{
    /// <summary>Header carrying the key-encryption key's id.</summary>
    public const string KeyIdHeader = "Integration-Encryption-Key-Id";

    /// <summary>Header carrying the wrapped data key (Base64).</summary>
    public const string WrappedKeyHeader = "Integration-Encryption-Wrapped-Key";

    const int NonceSize = 12;
    const int TagSize = 16;

    /// <summary>Encrypts <paramref name="plaintext"/> with a new data key wrapped by the provider's current key.</summary>
    public static SealedMessage Seal(IKeyProvider keys, ReadOnlySpan<byte> plaintext)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var kek = keys.Find(keys.CurrentKeyId) ?? throw new InvalidOperationException($"the key provider has no current key '{keys.CurrentKeyId}'");
        var dataKey = RandomNumberGenerator.GetBytes(32);
        try
        {
            return new SealedMessage(kek.Id, kek.Wrap(dataKey), Seal(dataKey, plaintext));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    /// <summary>Decrypts a sealed message with the key it names.</summary>
    /// <exception cref="CryptographicException">Unknown key id, tampered ciphertext or wrapped key; the message names the key id, never key material.</exception>
    public static byte[] Open(IKeyProvider keys, SealedMessage message)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(message);
        var kek = keys.Find(message.KeyId) ?? throw new CryptographicException($"no key-encryption key '{message.KeyId}' (the provider has {keys.CurrentKeyId} as current)");
        if (!kek.CanUnwrap)
            throw new CryptographicException($"key '{message.KeyId}' is a public key here: this side can seal, not open");
        byte[] dataKey;
        try
        {
            dataKey = kek.Unwrap(message.WrappedKey);
        }
        catch (CryptographicException exception)
        {
            throw new CryptographicException($"the data key does not unwrap with key '{message.KeyId}' (tampered, or wrapped with another key)", exception);
        }

        try
        {
            return Open(dataKey, message.Ciphertext);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
        }
    }

    internal static byte[] Seal(byte[] key, ReadOnlySpan<byte> plaintext)
    {
        var output = new byte[NonceSize + TagSize + plaintext.Length];
        var nonce = output.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plaintext, output.AsSpan(NonceSize + TagSize), output.AsSpan(NonceSize, TagSize));
        return output;
    }

    internal static byte[] Open(byte[] key, ReadOnlySpan<byte> sealedBytes)
    {
        if (sealedBytes.Length < NonceSize + TagSize)
            throw new CryptographicException($"sealed data of {sealedBytes.Length} bytes is shorter than nonce and tag ({NonceSize + TagSize})");
        var plaintext = new byte[sealedBytes.Length - NonceSize - TagSize];
        using var aes = new AesGcm(key, TagSize);
        aes.Decrypt(sealedBytes[..NonceSize], sealedBytes[(NonceSize + TagSize)..], sealedBytes.Slice(NonceSize, TagSize), plaintext);
        return plaintext;
    }
}
