using System.Text.Json;
using MassTransit;

namespace Integration.Patterns.History;

/// <summary>One hop of a message through a route.</summary>
/// <param name="Step">The step's name, e.g. <c>route:parts-electronics</c>.</param>
/// <param name="Node">The machine that ran it.</param>
/// <param name="At">When.</param>
public sealed record MessageHistoryEntry(string Step, string Node, DateTimeOffset At);

/// <summary>
/// The message history (EIP "Message History"): every route step appends <c>{step, node, at}</c>, and every message a
/// route sends carries the whole list in the <see cref="Header"/> header as JSON, so any consumer — .NET or not —
/// can read where a message has been. Histories continue across routes and services.
/// </summary>
public sealed class MessageHistory
{
    /// <summary>Transport header carrying the history as a JSON array.</summary>
    public const string Header = "Integration-History";

    /// <summary>Longest history kept; older hops are dropped first so a looping message cannot grow without bound.</summary>
    public const int MaxEntries = 100;

    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    static readonly string Node = Environment.MachineName;

    readonly List<MessageHistoryEntry> _entries;

    MessageHistory(List<MessageHistoryEntry> entries) => _entries = entries;

    /// <summary>The hops so far, oldest first.</summary>
    public IReadOnlyList<MessageHistoryEntry> Entries
    {
        get
        {
            lock (_entries)
                return _entries.ToList();
        }
    }

    /// <summary>The history of the message being consumed (what it arrived with plus the steps run here so far).</summary>
    public static MessageHistory Of(ConsumeContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.GetOrAddPayload(() => new MessageHistory(Parse(context.Headers.Get<string>(Header))));
    }

    /// <summary>Reads the history a message arrived with, from its headers.</summary>
    public static IReadOnlyList<MessageHistoryEntry> Read(Headers headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        return Parse(headers.Get<string>(Header));
    }

    /// <summary>Appends a hop run on this machine now (every route step does).</summary>
    internal void Append(string step)
    {
        lock (_entries)
        {
            _entries.Add(new MessageHistoryEntry(step, Node, DateTimeOffset.UtcNow));
            if (_entries.Count > MaxEntries)
                _entries.RemoveRange(0, _entries.Count - MaxEntries);
        }
    }

    /// <summary>Drops the hops after the first <paramref name="count"/> (a splitter gives each part the history up to the split).</summary>
    internal void TruncateTo(int count)
    {
        lock (_entries)
        {
            if (count >= 0 && _entries.Count > count)
                _entries.RemoveRange(count, _entries.Count - count);
        }
    }

    /// <summary>A history of one hop, for messages sent outside any consumed message (an aggregator's timeout).</summary>
    internal static string Single(string step) =>
        JsonSerializer.Serialize(new[] { new MessageHistoryEntry(step, Node, DateTimeOffset.UtcNow) }, Json);

    /// <summary>The header value.</summary>
    public string ToJson()
    {
        lock (_entries)
            return JsonSerializer.Serialize(_entries, Json);
    }

    static List<MessageHistoryEntry> Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
            return [];
        try
        {
            return JsonSerializer.Deserialize<List<MessageHistoryEntry>>(json, Json) ?? [];
        }
        catch (JsonException)
        {
            // A foreign or damaged header must not make the message unprocessable: start a new history.
            return [];
        }
    }
}
