using System.Collections.Frozen;

namespace Integration.Patterns.Security;

/// <summary>
/// The AES keys a bus encrypts and decrypts with. New messages are encrypted with <see cref="CurrentKeyId"/>; messages
/// are decrypted with whichever key their <c>Integration-Encryption-Key-Id</c> header names, so a key can be rotated by
/// adding the new one, making it current, and removing the old one once no message encrypted with it is left in a queue.
/// Immutable; key bytes never appear in <see cref="ToString"/>.
/// </summary>
public sealed class EncryptionKeyRing
{
    readonly FrozenDictionary<string, byte[]> _keys;

    EncryptionKeyRing(string currentKeyId, FrozenDictionary<string, byte[]> keys)
    {
        CurrentKeyId = currentKeyId;
        _keys = keys;
    }

    /// <summary>The key new messages are encrypted with.</summary>
    public string CurrentKeyId { get; }

    /// <summary>Ids of every key this ring can decrypt with.</summary>
    public IReadOnlyCollection<string> KeyIds => _keys.Keys;

    /// <summary>Builds a ring from raw keys (16, 24 or 32 bytes each: AES-128/192/256).</summary>
    /// <exception cref="ArgumentException">A key has the wrong length, an id is empty or has white space, or the current key is missing.</exception>
    public static EncryptionKeyRing Create(string currentKeyId, IReadOnlyDictionary<string, byte[]> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count == 0)
            throw new ArgumentException("Keys: at least one key is required", nameof(keys));
        foreach (var (id, key) in keys)
        {
            if (string.IsNullOrWhiteSpace(id) || id.Any(char.IsWhiteSpace) || id.Any(c => c > 127))
                throw new ArgumentException($"Keys: key id '{id}' must be non-empty ASCII without white space", nameof(keys));
            if (key is null || key.Length is not (16 or 24 or 32))
                throw new ArgumentException($"Keys:{id}: an AES key must be 16, 24 or 32 bytes, not {key?.Length ?? 0}", nameof(keys));
        }

        if (string.IsNullOrWhiteSpace(currentKeyId) || !keys.ContainsKey(currentKeyId))
            throw new ArgumentException($"CurrentKeyId: '{currentKeyId}' is not one of the keys ({string.Join(", ", keys.Keys)})", nameof(currentKeyId));

        return new EncryptionKeyRing(currentKeyId, keys.ToFrozenDictionary(k => k.Key, k => k.Value.ToArray(), StringComparer.Ordinal));
    }

    /// <summary>Builds a ring from settings whose keys are Base64 text (as they come from configuration or a secret store).</summary>
    /// <exception cref="ArgumentException">As <see cref="Create"/>, or a key is not Base64; the message names the setting.</exception>
    public static EncryptionKeyRing FromOptions(MessageEncryptionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var keys = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (id, text) in options.Keys)
        {
            try
            {
                keys[id] = Convert.FromBase64String(text ?? "");
            }
            catch (FormatException)
            {
                throw new ArgumentException($"Keys:{id}: not valid Base64", nameof(options));
            }
        }

        return Create(options.CurrentKeyId, keys);
    }

    /// <summary>Generates a random 256-bit key, Base64 encoded, for configuration.</summary>
    public static string GenerateKey() => Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));

    internal bool TryGetKey(string keyId, out byte[] key) => _keys.TryGetValue(keyId, out key!);

    internal byte[] CurrentKey => _keys[CurrentKeyId];

    /// <inheritdoc />
    public override string ToString() => $"EncryptionKeyRing(current: {CurrentKeyId}, keys: {string.Join(", ", _keys.Keys)})";
}

/// <summary>Configuration shape of a key ring, e.g. section <c>Integration:Encryption</c>.</summary>
public sealed class MessageEncryptionOptions
{
    /// <summary>Id of the key new messages are encrypted with.</summary>
    public string CurrentKeyId { get; set; } = "";

    /// <summary>Key id → Base64 AES key (16, 24 or 32 bytes). Keep retired keys until their messages are consumed.</summary>
    public Dictionary<string, string> Keys { get; set; } = new(StringComparer.Ordinal);
}
