using System.Net.Mime;
using System.Runtime.Serialization;
using System.Text;
using System.Text.Json;
using MassTransit;
using MassTransit.Serialization;

namespace Integration.Patterns.Normalization;

/// <summary>A message as it arrived: its content type and its text, for the normalizer (<c>RouteEndpointOptions.RawDocuments</c>).</summary>
/// <param name="ContentType">The transport content type, or null when the producer set none.</param>
/// <param name="Text">The body as UTF-8 text.</param>
[MessageUrn("integration:raw-document")]
public sealed record RawDocument(string? ContentType, string Text);

/// <summary>
/// Reads raw bodies of one content type into the JSON MassTransit's raw JSON deserializer binds messages from: XML
/// bodies converted (<see cref="FormatReader.XmlToJson"/>), or any body wrapped as a <see cref="RawDocument"/>.
/// </summary>
sealed class RawBodyDeserializer(ContentType contentType, bool asDocument) : IMessageDeserializer, ISerializerFactory
{
    const RawSerializerOptions Raw = RawSerializerOptions.AnyMessageType | RawSerializerOptions.AddTransportHeaders;

    public ContentType ContentType { get; } = contentType;

    public IMessageSerializer CreateSerializer() => new SystemTextJsonRawMessageSerializer(Raw);

    public IMessageDeserializer CreateDeserializer() => this;

    public void Probe(ProbeContext context)
    {
        var scope = context.CreateScope(asDocument ? "rawDocument" : "rawXml");
        scope.Add("contentType", ContentType.MediaType);
    }

    public ConsumeContext Deserialize(ReceiveContext receiveContext) =>
        new BodyConsumeContext(receiveContext, Read(receiveContext.Body, receiveContext.TransportHeaders, receiveContext.InputAddress, receiveContext.ContentType?.ToString()));

    public SerializerContext Deserialize(MessageBody body, Headers headers, Uri? destinationAddress = null) =>
        Read(body, headers, destinationAddress, headers.Get<string>("Content-Type"));

    public MessageBody GetMessageBody(string text) => new StringMessageBody(text);

    SerializerContext Read(MessageBody body, Headers headers, Uri? destinationAddress, string? declaredContentType)
    {
        string text;
        try
        {
            text = Encoding.UTF8.GetString(body.GetBytes());
        }
        catch (DecoderFallbackException exception)
        {
            throw new SerializationException($"The body is not UTF-8 text: {exception.Message}");
        }

        JsonElement element;
        if (asDocument)
            element = JsonSerializer.SerializeToElement(new RawDocument(declaredContentType, text), FormatReader.Options);
        else
        {
            try
            {
                element = JsonSerializer.SerializeToElement(FormatReader.XmlToJson(text), FormatReader.Options);
            }
            catch (NormalizationException exception)
            {
                throw new SerializationException(exception.Message);
            }
        }

        return new SystemTextJsonRawSerializerContext(SystemTextJsonMessageSerializer.Instance, FormatReader.Options, ContentType,
            new RawMessageContext(headers, destinationAddress!, Raw), headers.GetMessageTypes(), Raw, element);
    }
}
