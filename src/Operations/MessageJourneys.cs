using System.Globalization;
using System.Text.Json;

namespace Integration.Operations;

/// <summary>
/// For the dashboard's journeys: messages that share a conversation, a correlation id, an initiator or a trace (a
/// route's copies of one message carry its trace), or of which one caused the other, are one journey.
/// </summary>
static class MessageJourneys
{
    public static object Group(IReadOnlyList<StoredMessage> messages)
    {
        var parent = new Dictionary<string, string>(StringComparer.Ordinal);
        string Root(string id)
        {
            while (parent.TryGetValue(id, out var up) && up != id)
                id = up;
            return id;
        }

        void Join(string a, string? b)
        {
            parent.TryAdd(a, a);
            if (b is null)
                return;
            parent.TryAdd(b, b);
            var (ra, rb) = (Root(a), Root(b));
            if (ra != rb)
                parent[rb] = ra;
        }

        foreach (var m in messages)
        {
            var self = "m:" + m.Id.ToString(CultureInfo.InvariantCulture);
            Join(self, m.MessageId is null ? null : "id:" + m.MessageId);
            Join(self, m.InitiatorId is null ? null : "id:" + m.InitiatorId);
            Join(self, m.ConversationId is null ? null : "conversation:" + m.ConversationId);
            Join(self, m.CorrelationId is null ? null : "correlation:" + m.CorrelationId);
            Join(self, TraceId(m.Headers) is { } trace ? "trace:" + trace : null);
        }

        return messages.GroupBy(m => Root("m:" + m.Id.ToString(CultureInfo.InvariantCulture)), StringComparer.Ordinal)
            .Select(g => new
            {
                conversation = g.Select(m => m.ConversationId).FirstOrDefault(c => c is not null) ?? g.Key,
                correlationId = g.Select(m => m.CorrelationId).FirstOrDefault(c => c is not null),
                first = g.Min(m => m.StoredAt),
                last = g.Max(m => m.StoredAt),
                hops = g.OrderBy(m => m.Id).Select(m => new
                {
                    id = m.Id,
                    exchange = m.Exchange,
                    type = m.MessageType,
                    at = m.StoredAt,
                    history = m.History is null ? (JsonElement?)null : JsonSerializer.Deserialize<JsonElement>(m.History),
                }).ToList(),
            })
            .OrderByDescending(j => j.last)
            .ToList();
    }

    /// <summary>The W3C trace id in the <c>MT-Activity-Id</c> header (<c>00-{trace}-{span}-{flags}</c>), if any.</summary>
    static string? TraceId(string headers)
    {
        using var document = JsonDocument.Parse(headers);
        return document.RootElement.TryGetProperty("MT-Activity-Id", out var activity) && activity.ValueKind == JsonValueKind.String
            && activity.GetString()!.Split('-') is [_, { Length: 32 } trace, ..] ? trace : null;
    }
}
