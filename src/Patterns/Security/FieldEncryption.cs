using System.Collections;
using System.Collections.Concurrent;
using System.Linq.Expressions;
using System.Net.Mime;
using System.Reflection;
using System.Runtime.Serialization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Security;

/// <summary>
/// Marks a contract property whose value is encrypted in the JSON body when the bus uses field-level encryption
/// (<see cref="EncryptionConfigurationExtensions.UseFieldEncryption(IBusFactoryConfigurator, IKeyProvider, Action{IFieldEncryptionConfigurator})"/>). The rest of
/// the message stays plaintext, so content-based routers and filters can still read it without a key. Works on
/// properties of the message and of nested objects (not of items in collections).
/// </summary>
[AttributeUsage(AttributeTargets.Property, Inherited = true, AllowMultiple = false)]
public sealed class EncryptedAttribute : Attribute;

/// <summary>
/// Lists properties to encrypt without marking them (contracts from a package that does not reference this one), in
/// addition to those marked <see cref="EncryptedAttribute"/>.
/// </summary>
public interface IFieldEncryptionConfigurator
{
    /// <summary>Encrypts <paramref name="property"/> of <typeparamref name="T"/> (and of types derived from it), e.g. <c>p =&gt; p.CardNumber</c>.</summary>
    /// <exception cref="ArgumentException">The expression is not a property of <typeparamref name="T"/>.</exception>
    IFieldEncryptionConfigurator Encrypt<T>(Expression<Func<T, object?>> property)
        where T : class;
}

/// <summary>The properties listed with <see cref="IFieldEncryptionConfigurator"/>: immutable once built.</summary>
internal sealed class FieldEncryptionConfigurator : IFieldEncryptionConfigurator
{
    readonly List<(Type Type, string Property)> _listed = [];

    public IFieldEncryptionConfigurator Encrypt<T>(Expression<Func<T, object?>> property)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(property);
        var body = property.Body is UnaryExpression { NodeType: ExpressionType.Convert } convert ? convert.Operand : property.Body;
        if (body is not MemberExpression { Member: PropertyInfo info } member || member.Expression is not ParameterExpression)
            throw new ArgumentException($"Encrypt<{typeof(T).Name}>: '{property}' is not a property of {typeof(T).Name} (write p => p.Property)", nameof(property));
        _listed.Add((typeof(T), info.Name));
        return this;
    }

    public static IReadOnlyList<(Type Type, string Property)> Build(Action<IFieldEncryptionConfigurator>? configure)
    {
        var configurator = new FieldEncryptionConfigurator();
        configure?.Invoke(configurator);
        return configurator._listed.ToArray();
    }
}

/// <summary>
/// What a field-encrypted value looks like on the wire, for consumers and tools outside .NET: the property's JSON value is
/// replaced by the string <c>$enc:v1:{keyId}:{wrappedDataKey, Base64}:{nonce|tag|ciphertext, Base64}</c>, where the
/// ciphertext is AES-256-GCM (a fresh data key per field) of the value's JSON text, and the data key is wrapped by the
/// key-encryption key <c>keyId</c> (AES-GCM or RSA-OAEP-SHA256).
/// </summary>
public static class FieldEncryption
{
    /// <summary>Prefix of every encrypted field value.</summary>
    public const string Prefix = "$enc:v1:";

    /// <summary>Encrypts one JSON value (its UTF-8 text) into the field form.</summary>
    public static string Seal(IKeyProvider keys, ReadOnlySpan<byte> json)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var sealedValue = EnvelopeEncryption.Seal(keys, json);
        return $"{Prefix}{sealedValue.KeyId}:{Convert.ToBase64String(sealedValue.WrappedKey)}:{Convert.ToBase64String(sealedValue.Ciphertext)}";
    }

    /// <summary>Decrypts a value in the field form back to its JSON text.</summary>
    /// <exception cref="CryptographicException">Not in the field form, unknown key, tampered; the message names the key id, never key material.</exception>
    public static byte[] Open(IKeyProvider keys, string value)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(value);
        if (!value.StartsWith(Prefix, StringComparison.Ordinal))
            throw new CryptographicException($"the value does not start with {Prefix}");
        var rest = value.AsSpan(Prefix.Length);
        var last = rest.LastIndexOf(':');
        var middle = last < 0 ? -1 : rest[..last].LastIndexOf(':');
        if (middle <= 0)
            throw new CryptographicException($"the value is not {Prefix}{{keyId}}:{{wrappedKey}}:{{ciphertext}}");
        var keyId = rest[..middle].ToString();
        byte[] wrapped, ciphertext;
        try
        {
            wrapped = Convert.FromBase64String(rest[(middle + 1)..last].ToString());
            ciphertext = Convert.FromBase64String(rest[(last + 1)..].ToString());
        }
        catch (FormatException)
        {
            throw new CryptographicException($"the value under key '{keyId}' is not Base64");
        }

        if (keys.Find(keyId) is null)
            throw new CryptographicException($"it names key '{keyId}', which this endpoint does not have (current key: {keys.CurrentKeyId})");
        try
        {
            return EnvelopeEncryption.Open(keys, new SealedMessage(keyId, wrapped, ciphertext));
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new CryptographicException($"it failed authentication with key '{keyId}': the value or its wrapped key was altered");
        }
    }
}

/// <summary>
/// The MassTransit JSON serializer with field-level encryption: on send, the properties marked <see cref="EncryptedAttribute"/>
/// are replaced in the envelope's <c>message</c> by their <see cref="FieldEncryption"/> form; on receive, every value in
/// that form is decrypted before the message is deserialized. The content type stays MassTransit's JSON, so a hop without
/// keys (a router) reads the plaintext properties and forwards the ciphertext ones untouched. A value that cannot be
/// decrypted fails deserialization naming the JSON path and key id — never the value, the plaintext or key material —
/// and the message goes, as received, to the <c>_error</c> queue with the reason.
/// </summary>
internal sealed class FieldEncryptionMessageSerializer : IMessageSerializer, IMessageDeserializer
{
    static readonly byte[] PrefixBytes = Encoding.UTF8.GetBytes(FieldEncryption.Prefix);

    readonly IKeyProvider _keys;
    readonly SystemTextJsonMessageSerializer _json = new(SystemTextJsonMessageSerializer.JsonContentType);
    readonly ConcurrentDictionary<Type, FieldPlan?> _plans = new();
    readonly IReadOnlyList<(Type Type, string Property)> _listed;

    public FieldEncryptionMessageSerializer(IKeyProvider keys, IReadOnlyList<(Type Type, string Property)>? listed = null)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _keys = keys;
        _listed = listed ?? [];
    }

    /// <inheritdoc cref="IMessageSerializer.ContentType" />
    public ContentType ContentType => SystemTextJsonMessageSerializer.JsonContentType;

    /// <inheritdoc />
    public MessageBody GetMessageBody<T>(SendContext<T> context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        var plan = PlanOf(context.Message.GetType());
        if (plan is null)
            return _json.GetMessageBody(context);
        context.Headers.Set(MessageEncryption.EncryptedFieldsHeader, string.Join(",", plan.Paths("")));
        var body = _json.GetMessageBody(context).GetBytes();
        var root = JsonNode.Parse(body) as JsonObject ?? throw new SerializationException("The MassTransit envelope is not a JSON object");
        if (Child(root, "message") is JsonObject message)
            Encrypt(message, plan);
        return new BytesMessageBody(Encoding.UTF8.GetBytes(root.ToJsonString()));
    }

    void Encrypt(JsonObject json, FieldPlan plan)
    {
        foreach (var field in plan.Fields)
        {
            var name = NameIn(json, field.JsonName);
            if (name is null || json[name] is not { } value)
                continue;
            if (field.Encrypted)
                json[name] = FieldEncryption.Seal(_keys, Encoding.UTF8.GetBytes(value.ToJsonString()));
            else if (field.Nested is { } nested && value is JsonObject child)
                Encrypt(child, nested);
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
        var bytes = body.GetBytes();
        if (bytes.AsSpan().IndexOf(PrefixBytes) < 0)
            return _json.Deserialize(body, headers, destinationAddress);
        JsonObject root;
        try
        {
            root = JsonNode.Parse(bytes) as JsonObject ?? throw new SerializationException("Field-encrypted message: the body is not a JSON object");
        }
        catch (JsonException exception)
        {
            // The parser's message names a line and position, never the text.
            throw new SerializationException($"Field-encrypted message: the body is not valid JSON ({exception.Message})");
        }

        if (Child(root, "message") is JsonNode message)
            Decrypt(message, "");
        return _json.Deserialize(new BytesMessageBody(Encoding.UTF8.GetBytes(root.ToJsonString())), headers, destinationAddress);
    }

    void Decrypt(JsonNode node, string path)
    {
        switch (node)
        {
            case JsonObject json:
                foreach (var (name, child) in json.ToList())
                {
                    var childPath = path.Length == 0 ? name : $"{path}.{name}";
                    if (IsSealed(child, out var text))
                        json[name] = Open(text, childPath);
                    else if (child is not null)
                        Decrypt(child, childPath);
                }

                break;
            case JsonArray array:
                for (var i = 0; i < array.Count; i++)
                {
                    var childPath = $"{path}[{i}]";
                    if (IsSealed(array[i], out var text))
                        array[i] = Open(text, childPath);
                    else if (array[i] is { } child)
                        Decrypt(child, childPath);
                }

                break;
        }
    }

    JsonNode? Open(string value, string path)
    {
        try
        {
            return JsonNode.Parse(FieldEncryption.Open(_keys, value));
        }
        catch (CryptographicException exception)
        {
            throw new SerializationException($"Encrypted field '{path}' cannot be decrypted: {exception.Message}");
        }
        catch (JsonException)
        {
            throw new SerializationException($"Encrypted field '{path}' decrypted to something that is not JSON");
        }
    }

    static bool IsSealed(JsonNode? node, out string text)
    {
        text = "";
        if (node is JsonValue value && value.GetValueKind() == JsonValueKind.String && value.GetValue<string>() is { } s
            && s.StartsWith(FieldEncryption.Prefix, StringComparison.Ordinal))
        {
            text = s;
            return true;
        }

        return false;
    }

    static JsonNode? Child(JsonObject json, string name) => NameIn(json, name) is { } found ? json[found] : null;

    static string? NameIn(JsonObject json, string name)
    {
        if (json.ContainsKey(name))
            return name;
        foreach (var (key, _) in json)
        {
            if (string.Equals(key, name, StringComparison.OrdinalIgnoreCase))
                return key;
        }

        return null;
    }

    FieldPlan? PlanOf(Type type) => _plans.GetOrAdd(type, t => FieldPlan.For(t, _listed, []));

    /// <inheritdoc />
    public MessageBody GetMessageBody(string text) => new StringMessageBody(text);

    /// <inheritdoc />
    public void Probe(ProbeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var scope = context.CreateScope("field-encryption");
        scope.Add("contentType", ContentType.MediaType);
        scope.Add("currentKeyId", _keys.CurrentKeyId);
    }

    /// <summary>Which properties of a type are encrypted, directly or in nested objects; null when none.</summary>
    sealed record FieldPlan(IReadOnlyList<PlannedField> Fields)
    {
        public static FieldPlan? For(Type type, IReadOnlyList<(Type Type, string Property)> listed, HashSet<Type> visiting)
        {
            if (!visiting.Add(type))
                return null;
            var fields = new List<PlannedField>();
            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (property.GetIndexParameters().Length > 0)
                    continue;
                var jsonName = property.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name
                               ?? SystemTextJsonMessageSerializer.Options.PropertyNamingPolicy?.ConvertName(property.Name) ?? property.Name;
                if (property.IsDefined(typeof(EncryptedAttribute), inherit: true)
                    || listed.Any(l => l.Property == property.Name && l.Type.IsAssignableFrom(type)))
                    fields.Add(new PlannedField(jsonName, true, null));
                else if (IsObject(property.PropertyType) && For(property.PropertyType, listed, visiting) is { } nested)
                    fields.Add(new PlannedField(jsonName, false, nested));
            }

            visiting.Remove(type);
            return fields.Count == 0 ? null : new FieldPlan(fields);
        }

        static bool IsObject(Type type) =>
            type is { IsClass: true, IsArray: false } && type != typeof(string) && !typeof(IEnumerable).IsAssignableFrom(type)
            && type.Namespace?.StartsWith("System", StringComparison.Ordinal) != true;

        public IEnumerable<string> Paths(string prefix) =>
            Fields.SelectMany(f => f.Encrypted ? [prefix + f.JsonName] : f.Nested!.Paths($"{prefix}{f.JsonName}."));
    }

    sealed record PlannedField(string JsonName, bool Encrypted, FieldPlan? Nested);
}

/// <summary>Registers <see cref="FieldEncryptionMessageSerializer"/> with MassTransit's serialization.</summary>
internal sealed class FieldEncryptionSerializerFactory(IKeyProvider keys, IReadOnlyList<(Type Type, string Property)>? listed = null) : ISerializerFactory
{
    readonly FieldEncryptionMessageSerializer _serializer = new(keys, listed);

    /// <inheritdoc />
    public ContentType ContentType => _serializer.ContentType;

    /// <inheritdoc />
    public IMessageSerializer CreateSerializer() => _serializer;

    /// <inheritdoc />
    public IMessageDeserializer CreateDeserializer() => _serializer;
}
