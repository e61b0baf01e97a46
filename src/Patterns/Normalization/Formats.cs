using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Xml;
using System.Xml.Linq;
using MassTransit.Serialization;

namespace Integration.Patterns.Normalization;

/// <summary>
/// Thrown when a body cannot be read in its format, or no mapping exists for it; the message goes to the error queue with
/// this reason (it carries the parser's words itself, since <c>MT-Fault-Message</c> shows the innermost exception).
/// </summary>
public sealed class NormalizationException(string message) : Exception(message);

/// <summary>The wire formats the normalizer and the raw channel adapters read.</summary>
internal enum MessageFormat
{
    /// <summary><c>application/json</c> (or <c>*+json</c>).</summary>
    Json,

    /// <summary><c>application/xml</c>, <c>text/xml</c> (or <c>*+xml</c>).</summary>
    Xml,

    /// <summary><c>text/csv</c>: a header line, then one record per line.</summary>
    Csv,
}

/// <summary>
/// Reads XML and CSV into JSON so that one set of typed mappings serves every format. XML: the root element becomes an
/// object; attributes and child elements become properties (by local name, matched case-insensitively); an element with
/// only text becomes a string; repeated elements become an array. CSV: each record becomes an object keyed by the header
/// line. Values stay strings; numbers and booleans are read from strings when the target property wants them.
/// </summary>
internal static class FormatReader
{
    /// <summary>JSON options that read numbers and booleans from strings, otherwise like MassTransit's.</summary>
    public static JsonSerializerOptions Options { get; } = CreateOptions();

    static JsonSerializerOptions CreateOptions()
    {
        var options = new JsonSerializerOptions(SystemTextJsonMessageSerializer.Options)
        {
            NumberHandling = JsonNumberHandling.AllowReadingFromString,
        };
        options.Converters.Add(new LenientBooleanConverter());
        return options;
    }

    /// <summary>The format a content type names; else a guess from the first character of the body (<c>{</c>/<c>[</c> JSON, <c>&lt;</c> XML, else CSV).</summary>
    public static MessageFormat Detect(string? contentType, string text)
    {
        var media = contentType?.Split(';')[0].Trim().ToLowerInvariant();
        if (media is not null)
        {
            if (media == "application/json" || media.EndsWith("+json", StringComparison.Ordinal))
                return MessageFormat.Json;
            if (media is "application/xml" or "text/xml" || media.EndsWith("+xml", StringComparison.Ordinal))
                return MessageFormat.Xml;
            if (media is "text/csv" or "application/csv")
                return MessageFormat.Csv;
        }

        var first = text.AsSpan().TrimStart();
        return first.IsEmpty ? MessageFormat.Json : first[0] switch
        {
            '{' or '[' => MessageFormat.Json,
            '<' => MessageFormat.Xml,
            _ => MessageFormat.Csv,
        };
    }

    /// <summary>The records of a body in <paramref name="format"/>: one for JSON and XML, one per CSV record.</summary>
    /// <exception cref="NormalizationException">The body cannot be read in that format; the message says why.</exception>
    public static IReadOnlyList<JsonNode?> Read(MessageFormat format, string text) => format switch
    {
        MessageFormat.Json => [ParseJson(text)],
        MessageFormat.Xml => [XmlToJson(text)],
        _ => CsvToJson(text),
    };

    /// <summary>Reads a JSON body.</summary>
    /// <exception cref="NormalizationException">The JSON is malformed.</exception>
    public static JsonNode? ParseJson(string text)
    {
        try
        {
            return JsonNode.Parse(text);
        }
        catch (JsonException exception)
        {
            throw new NormalizationException($"The body is not valid JSON: {exception.Message}");
        }
    }

    /// <summary>Reads an XML document as a JSON object (see the type's remarks).</summary>
    /// <exception cref="NormalizationException">The XML is malformed, or has a document type declaration (DTDs are not read).</exception>
    public static JsonObject XmlToJson(string xml)
    {
        XDocument document;
        try
        {
            // No DTD: XDocument.Parse expands internal entities (up to 10 million characters), so a few hundred bytes of
            // nested entities would inflate to tens of megabytes (found by the xml fuzz target); no external resolution.
            using var reader = XmlReader.Create(new StringReader(xml), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            document = XDocument.Load(reader, LoadOptions.None);
        }
        catch (XmlException exception)
        {
            throw new NormalizationException($"The body is not well-formed XML: {exception.Message}");
        }

        return document.Root is { } root
            ? ToNode(root) as JsonObject ?? new JsonObject { [root.Name.LocalName] = ToNode(root) }
            : throw new NormalizationException("The XML body has no root element");
    }

    static JsonNode? ToNode(XElement element)
    {
        var attributes = element.Attributes().Where(a => !a.IsNamespaceDeclaration).ToList();
        if (!element.HasElements && attributes.Count == 0)
            return JsonValue.Create(element.Value);

        var result = new JsonObject();
        foreach (var attribute in attributes)
            result[attribute.Name.LocalName] = attribute.Value;
        foreach (var group in element.Elements().GroupBy(e => e.Name.LocalName, StringComparer.Ordinal))
        {
            var items = group.ToList();
            result[group.Key] = items.Count == 1 ? ToNode(items[0]) : new JsonArray(items.Select(ToNode).ToArray());
        }

        return result;
    }

    /// <summary>Reads CSV (RFC 4180: comma separated, a header line, double quotes around fields with commas, quotes or line breaks).</summary>
    /// <exception cref="NormalizationException">No header, an unterminated quote, or a record with more fields than the header.</exception>
    public static IReadOnlyList<JsonObject> CsvToJson(string csv)
    {
        var rows = ParseCsv(csv);
        if (rows.Count == 0)
            throw new NormalizationException("The CSV body is empty; it needs a header line and at least one record");
        var header = rows[0].Select(h => h.Trim()).ToList();
        if (header.Any(string.IsNullOrEmpty) || header.Distinct(StringComparer.OrdinalIgnoreCase).Count() != header.Count)
            throw new NormalizationException("The CSV header line has an empty or repeated column name");
        if (rows.Count == 1)
            throw new NormalizationException("The CSV body has a header line but no record");
        var records = new List<JsonObject>();
        for (var r = 1; r < rows.Count; r++)
        {
            if (rows[r].Count > header.Count)
                throw new NormalizationException($"CSV record {r} has {rows[r].Count} fields; the header has {header.Count}");
            var record = new JsonObject();
            for (var c = 0; c < header.Count; c++)
                record[header[c]] = c < rows[r].Count ? rows[r][c] : null;
            records.Add(record);
        }

        return records;
    }

    static List<List<string>> ParseCsv(string text)
    {
        var rows = new List<List<string>>();
        var row = new List<string>();
        var field = new StringBuilder();
        var quoted = false;
        var fieldStarted = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (quoted)
            {
                if (c == '"')
                {
                    if (i + 1 < text.Length && text[i + 1] == '"')
                    {
                        field.Append('"');
                        i++;
                    }
                    else
                        quoted = false;
                }
                else
                    field.Append(c);
                continue;
            }

            switch (c)
            {
                case '"' when field.Length == 0:
                    quoted = true;
                    fieldStarted = true;
                    break;
                case ',':
                    row.Add(field.ToString());
                    field.Clear();
                    fieldStarted = true;
                    break;
                case '\r':
                    break;
                case '\n':
                    if (fieldStarted || field.Length > 0 || row.Count > 0)
                    {
                        row.Add(field.ToString());
                        rows.Add(row);
                    }

                    row = [];
                    field.Clear();
                    fieldStarted = false;
                    break;
                default:
                    field.Append(c);
                    fieldStarted = true;
                    break;
            }
        }

        if (quoted)
            throw new NormalizationException("The CSV body ends inside a quoted field (an unterminated \")");
        if (fieldStarted || field.Length > 0 || row.Count > 0)
        {
            row.Add(field.ToString());
            rows.Add(row);
        }

        return rows;
    }

    /// <summary>Turns a JSON node into <typeparamref name="T"/> with <see cref="Options"/>.</summary>
    /// <exception cref="NormalizationException">It does not fit.</exception>
    public static T Bind<T>(JsonNode? node, MessageFormat format)
    {
        try
        {
            return node.Deserialize<T>(Options) ?? throw new NormalizationException($"The {format} body reads as null for {typeof(T).Name}");
        }
        catch (JsonException exception)
        {
            throw new NormalizationException($"The {format} body does not fit {typeof(T).Name}: {exception.Message}");
        }
    }

    sealed class LenientBooleanConverter : JsonConverter<bool>
    {
        public override bool Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
        {
            JsonTokenType.True => true,
            JsonTokenType.False => false,
            JsonTokenType.String when bool.TryParse(reader.GetString(), out var value) => value,
            JsonTokenType.String when reader.GetString() is "1" or "yes" => true,
            JsonTokenType.String when reader.GetString() is "0" or "no" => false,
            _ => throw new JsonException($"'{(reader.TokenType == JsonTokenType.String ? reader.GetString() : reader.TokenType.ToString())}' is not a boolean"),
        };

        public override void Write(Utf8JsonWriter writer, bool value, JsonSerializerOptions options) => writer.WriteBooleanValue(value);
    }
}
