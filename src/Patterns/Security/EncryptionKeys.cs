using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;

namespace Integration.Patterns.Security;

/// <summary>
/// Key-encryption keys from configuration and files, for envelope and field-level encryption. Section
/// <c>Integration:Encryption</c>:
/// <list type="bullet">
/// <item><c>CurrentKeyId</c>: the key new messages (or fields) are wrapped with.</item>
/// <item><c>Keys:{id}</c>: a 32-byte AES key, Base64 (from a secret store or the environment, e.g.
/// <c>Integration__Encryption__Keys__2026-11</c>);</item>
/// <item>or <c>Keys:{id}:KeyFile</c>: a file holding that key (Base64 text, or the 32 raw bytes);</item>
/// <item>or <c>Keys:{id}:PublicKeyFile</c>: an RSA public key in PEM, for a producer that encrypts but must not decrypt;</item>
/// <item>or <c>Keys:{id}:PrivateKeyFile</c>: an RSA private key in PEM (PKCS#1 or PKCS#8), for the consumer that decrypts.</item>
/// </list>
/// Every mistake is reported at once, each naming its full configuration key; no message ever contains key material.
/// </summary>
public static class EncryptionKeys
{
    /// <summary>Default configuration section.</summary>
    public const string Section = "Integration:Encryption";

    /// <summary>Reads the keys under <paramref name="section"/> of <paramref name="configuration"/>.</summary>
    /// <exception cref="ArgumentException">A key is missing, not Base64, the wrong length, not RSA, its file does not exist, or the current key id is unknown; the message lists every mistake by its configuration key.</exception>
    public static IKeyProvider FromConfiguration(IConfiguration configuration, string section = Section)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentException.ThrowIfNullOrWhiteSpace(section);
        var failures = new List<string>();
        var keys = new List<IKeyEncryptionKey>();
        var root = configuration.GetSection(section);
        foreach (var entry in root.GetSection("Keys").GetChildren())
        {
            if (Read(entry, $"{section}:Keys:{entry.Key}", failures) is { } key)
                keys.Add(key);
        }

        var current = root["CurrentKeyId"];
        if (string.IsNullOrWhiteSpace(current))
            failures.Add($"{section}:CurrentKeyId: required (the id of the key new messages are encrypted with)");
        else if (keys.Count > 0 && keys.All(k => k.Id != current) && !failures.Any(f => f.StartsWith($"{section}:Keys:{current}:", StringComparison.Ordinal)))
            failures.Add($"{section}:CurrentKeyId: '{current}' is not one of the keys ({string.Join(", ", keys.Select(k => k.Id))})");
        if (!root.GetSection("Keys").GetChildren().Any())
            failures.Add($"{section}:Keys: at least one key is required");
        if (failures.Count > 0)
            throw new ArgumentException($"Encryption keys are not valid: {string.Join("; ", failures)}", nameof(configuration));
        return new StaticKeyProvider(current!, keys);
    }

    static IKeyEncryptionKey? Read(IConfigurationSection entry, string name, List<string> failures)
    {
        var id = entry.Key;
        if (string.IsNullOrWhiteSpace(id) || id.Any(c => char.IsWhiteSpace(c) || c == ':' || c > 127))
        {
            failures.Add($"{name}: a key id must be ASCII without white space or ':'");
            return null;
        }

        var file = entry["KeyFile"];
        var publicFile = entry["PublicKeyFile"];
        var privateFile = entry["PrivateKeyFile"];
        var given = (entry.Value is { Length: > 0 } ? 1 : 0) + new[] { file, publicFile, privateFile }.Count(f => !string.IsNullOrWhiteSpace(f));
        if (given != 1)
        {
            failures.Add($"{name}: set exactly one of {name} (Base64 AES key), {name}:KeyFile, {name}:PublicKeyFile or {name}:PrivateKeyFile");
            return null;
        }

        if (entry.Value is { Length: > 0 } base64)
            return Aes(id, name, base64, failures);
        if (!string.IsNullOrWhiteSpace(file))
        {
            if (!File.Exists(file))
            {
                failures.Add($"{name}:KeyFile: no file at '{file}'");
                return null;
            }

            var bytes = File.ReadAllBytes(file);
            if (bytes.Length == 32)
                return new AesKeyEncryptionKey(id, bytes);
            return Aes(id, $"{name}:KeyFile", System.Text.Encoding.ASCII.GetString(bytes).Trim(), failures);
        }

        var (setting, path, wantPrivate) = !string.IsNullOrWhiteSpace(privateFile) ? ($"{name}:PrivateKeyFile", privateFile, true) : ($"{name}:PublicKeyFile", publicFile!, false);
        if (!File.Exists(path))
        {
            failures.Add($"{setting}: no file at '{path}'");
            return null;
        }

        RsaKeyEncryptionKey key;
        try
        {
            key = RsaKeyEncryptionKey.FromPem(id, File.ReadAllText(path));
        }
        catch (ArgumentException exception)
        {
            failures.Add($"{setting}: {exception.Message.Split(" (Parameter", 2)[0]}");
            return null;
        }

        if (wantPrivate && !key.CanUnwrap)
        {
            failures.Add($"{setting}: '{path}' holds a public key; decrypting needs the private key");
            return null;
        }

        if (!wantPrivate && key.CanUnwrap)
        {
            failures.Add($"{setting}: '{path}' holds a private key; give a producer only the public key (or use PrivateKeyFile)");
            return null;
        }

        return key;
    }

    static AesKeyEncryptionKey? Aes(string id, string name, string base64, List<string> failures)
    {
        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            failures.Add($"{name}: not valid Base64");
            return null;
        }

        try
        {
            if (bytes.Length != 32)
            {
                failures.Add($"{name}: an AES key-encryption key must be 32 bytes, not {bytes.Length}");
                return null;
            }

            return new AesKeyEncryptionKey(id, bytes);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(bytes);
        }
    }
}
