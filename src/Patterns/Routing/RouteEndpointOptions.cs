using MassTransit;
using MassTransit.Configuration;
using MassTransit.Serialization;

namespace Integration.Patterns.Routing;

/// <summary>How a route's queue is read. Everything is off unless set.</summary>
public sealed class RouteEndpointOptions
{
    int? _retryLimit;
    TimeSpan _retryMin;
    TimeSpan _retryMax;
    int? _tripThreshold;
    TimeSpan _resetInterval;

    /// <summary>
    /// Channel adapter for non-.NET producers: accept plain JSON bodies (no MassTransit envelope) and send plain JSON on.
    /// A message the route passes on unchanged (routed, filtered, tapped, sent to its recipients) goes on exactly as it
    /// arrived: same bytes, content type, content encoding and headers (plus the route's own headers, such as the message
    /// history); a message a translator (or any step) replaced is serialized as plain JSON.
    /// </summary>
    public bool RawJson { get; set; }

    /// <summary>The serializer of <see cref="RawJson"/> endpoints.</summary>
    internal static IMessageSerializer RawJsonSerializer { get; } = new SystemTextJsonRawMessageSerializer(RawSerializerOptions.AnyMessageType | RawSerializerOptions.AddTransportHeaders);

    /// <summary>
    /// Channel adapter for non-.NET producers: accept plain XML bodies (content type <c>application/xml</c> or
    /// <c>text/xml</c>, no MassTransit envelope), read into the route's message type (elements and attributes matched
    /// to properties case-insensitively, numbers and booleans read from text). Malformed XML goes to <c>&lt;queue&gt;_error</c>
    /// with the parser's reason. Combine with <see cref="RawJson"/> to accept both; XML is the default for bodies without a content type unless RawJson is set.
    /// A message the route passes on unchanged goes on as it arrived (the XML body, its content type and headers).
    /// </summary>
    public bool RawXml { get; set; }

    /// <summary>
    /// For a normalizer: accept any body (JSON, XML, CSV, text; with or without a content type) as a
    /// <see cref="Normalization.RawDocument"/> carrying its content type and text. The route must be <c>From&lt;RawDocument&gt;</c>.
    /// A document the route passes on without normalizing it goes on as it arrived.
    /// </summary>
    public bool RawDocuments { get; set; }

    /// <summary>
    /// Largest body accepted, in bytes; a larger message goes to the error queue with the sizes in the reason and is not
    /// retried. Null: no limit beyond the broker's own.
    /// </summary>
    public int? MaxBodyBytes { get; set; }

    /// <summary>
    /// Compression (<see cref="Compression.CompressionOptions"/>): bodies whose content encoding is <c>gzip</c>, <c>br</c>,
    /// <c>lz4</c> or <c>snappy</c> are decompressed before they are read (typed, <see cref="RawJson"/>, <see cref="RawXml"/>
    /// and <see cref="RawDocuments"/> alike); a corrupt body, or one that inflates past its <c>MaxDecompressedBytes</c>,
    /// goes to <c>&lt;queue&gt;_error</c> with the reason. A compressed message the route passes on unchanged goes on as
    /// the plain one would (the decompressed body, its content type and headers, no content encoding), so downstream
    /// systems see the same message whichever way the producer sent it. With <c>Compress</c> set, everything the route
    /// sends (passed on or made by a step) is compressed above the threshold, with the route's encoding.
    /// Null (the default): compressed bodies are not understood.
    /// </summary>
    public Compression.CompressionOptions? Compression { get; set; }

    /// <summary>
    /// This route's deadline budget (<see cref="Deadlines.MessageDeadline"/>): a message works under its
    /// <c>Integration-Deadline</c> header or this long from its arrival, whichever is sooner, and everything the route
    /// sends (and an enricher's requests) carries that deadline on. Null: the header alone. Either way a message whose
    /// deadline has passed is not started: it goes to <c>&lt;queue&gt;_skipped</c> with the reason in
    /// <c>Integration-Skipped-Reason</c>, and a request's caller gets a fault.
    /// </summary>
    public TimeSpan? Deadline { get; set; }

    /// <summary>At most this many messages in process at once (a throttle); null: the transport's default.</summary>
    public int? ConcurrentMessageLimit { get; set; }

    /// <summary>
    /// Retries with exponential backoff and jitter before a message goes to the error queue:
    /// <paramref name="limit"/> retries, waits growing from <paramref name="min"/> to <paramref name="max"/>.
    /// </summary>
    public RouteEndpointOptions Retry(int limit, TimeSpan min, TimeSpan max)
    {
        _retryLimit = limit;
        _retryMin = min;
        _retryMax = max;
        return this;
    }

    /// <summary>
    /// Throttler: at most <paramref name="messages"/> per <paramref name="interval"/>, spaced evenly; the control bus can
    /// change it while the route runs (<c>route.rate-limit</c>). Messages over the rate wait; none is dropped.
    /// </summary>
    public RouteEndpointOptions RateLimit(int messages, TimeSpan interval)
    {
        RateLimitSetting = (messages, interval);
        return this;
    }

    internal (int Messages, TimeSpan Interval)? RateLimitSetting { get; private set; }

    /// <summary>Stops consuming for <paramref name="resetInterval"/> when <paramref name="tripThresholdPercent"/>% of recent messages failed.</summary>
    public RouteEndpointOptions CircuitBreaker(int tripThresholdPercent, TimeSpan resetInterval)
    {
        _tripThreshold = tripThresholdPercent;
        _resetInterval = resetInterval;
        return this;
    }

    internal IEnumerable<string> Validate()
    {
        if (RawDocuments && (RawJson || RawXml))
            yield return "RawDocuments reads every body as a RawDocument, so it excludes RawJson and RawXml";
        if (Compression is { } compression)
        {
            foreach (var failure in compression.Validate())
                yield return failure;
        }

        if (Deadline is { } deadline && deadline <= TimeSpan.Zero)
            yield return $"Deadline must be positive, not {deadline}";
        if (MaxBodyBytes is < 1)
            yield return $"MaxBodyBytes must be at least 1, not {MaxBodyBytes}";
        if (ConcurrentMessageLimit is < 1)
            yield return $"ConcurrentMessageLimit must be at least 1, not {ConcurrentMessageLimit}";
        if (_retryLimit is { } limit)
        {
            if (limit is < 1 or > 100)
                yield return $"Retry limit must be 1 to 100, not {limit}";
            if (_retryMin <= TimeSpan.Zero || _retryMax < _retryMin)
                yield return $"Retry intervals must satisfy 0 < min <= max (min {_retryMin}, max {_retryMax})";
        }

        if (RateLimitSetting is { } rate)
        {
            foreach (var failure in Throttling.RouteRateLimit.Validate(rate.Messages, rate.Interval))
                yield return $"RateLimit: {failure}";
        }

        if (_tripThreshold is { } trip && (trip is < 1 or > 100 || _resetInterval <= TimeSpan.Zero))
            yield return $"CircuitBreaker needs a trip threshold of 1 to 100 percent and a positive reset interval (got {trip}%, {_resetInterval})";
    }

    /// <summary>How the route's endpoint serializes a new message for sends outside the consume context (null: the bus's default).</summary>
    internal IMessageSerializer? SendSerializer(Compression.CompressionOptions? compression)
    {
        if (RawJson)
            return compression is null ? RawJsonSerializer : new Compression.CompressingSerializer(RawJsonSerializer, compression);
        return compression?.Compress is null ? null : new Compression.CompressingSerializer(SystemTextJsonMessageSerializer.Instance, compression);
    }

    internal void Apply(IReceiveEndpointConfigurator endpoint, Compression.CompressionOptions? compression)
    {
        // With compression, every format this endpoint reads is read through a decompressing deserializer of the same
        // content type, and what it serializes anew through a compressing serializer.
        ISerializerFactory Wrap(ISerializerFactory factory) => compression is null ? factory : new Compression.CompressionSerializerFactory(factory, compression);

        if (compression is not null && !RawJson && !RawXml && !RawDocuments)
        {
            var envelope = Wrap(new SystemTextJsonMessageSerializerFactory());
            endpoint.AddSerializer(envelope, isSerializer: true);
            endpoint.AddDeserializer(envelope, isDefault: true);
        }

        if (RawJson)
        {
            endpoint.AddDeserializer(Wrap(new SystemTextJsonRawMessageSerializerFactory(RawSerializerOptions.AnyMessageType)), isDefault: true);
            endpoint.AddSerializer(Wrap(new SystemTextJsonRawMessageSerializerFactory(RawSerializerOptions.AnyMessageType | RawSerializerOptions.AddTransportHeaders)), isSerializer: true);
            if (compression is not null)
                endpoint.AddDeserializer(Wrap(new SystemTextJsonMessageSerializerFactory()));   // .NET producers' envelopes, compressed too
        }

        if (RawXml)
        {
            endpoint.AddDeserializer(Wrap(new Normalization.RawBodyDeserializer(new System.Net.Mime.ContentType("application/xml"), asDocument: false)), isDefault: !RawJson);
            endpoint.AddDeserializer(Wrap(new Normalization.RawBodyDeserializer(new System.Net.Mime.ContentType("text/xml"), asDocument: false)));
        }

        if (RawDocuments)
        {
            endpoint.AddDeserializer(Wrap(new Normalization.RawBodyDeserializer(new System.Net.Mime.ContentType("application/json"), asDocument: true)), isDefault: true);
            foreach (var media in new[] { "application/xml", "text/xml", "text/csv", "application/csv", "text/plain" })
                endpoint.AddDeserializer(Wrap(new Normalization.RawBodyDeserializer(new System.Net.Mime.ContentType(media), asDocument: true)));
        }

        if (ConcurrentMessageLimit is { } concurrency)
            endpoint.ConcurrentMessageLimit = concurrency;

        if (_tripThreshold is { } trip)
        {
            endpoint.UseCircuitBreaker(cb =>
            {
                cb.TrackingPeriod = TimeSpan.FromMinutes(1);
                cb.TripThreshold = trip;
                cb.ActiveThreshold = 10;
                cb.ResetInterval = _resetInterval;
            });
        }

        if (_retryLimit is { } retries)
            endpoint.UseMessageRetry(r => r.Exponential(retries, _retryMin, _retryMax, TimeSpan.FromTicks(Math.Max(1, _retryMin.Ticks / 2))));
    }
}
