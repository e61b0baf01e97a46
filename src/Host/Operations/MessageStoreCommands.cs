using System.Globalization;
using System.Text.Json;

namespace Integration.Host.Operations;

/// <summary>Control commands over the <see cref="MessageStore"/>: query (Viewer) and replay (Operator).</summary>
public static class MessageStoreCommands
{
    /// <summary>Body of <c>POST /api/control/messages/replay</c>: the ids to replay, or a query selecting them; the destination queue (null: the original exchange).</summary>
    public sealed record ReplayRequest(List<long>? Ids, string? CorrelationId, string? MessageType, DateTimeOffset? From, DateTimeOffset? To, string? Exchange,
        string? Destination, int? Take);

    /// <summary>Registers the store, its consumer and the commands.</summary>
    public static IServiceCollection AddMessageStore(this IServiceCollection services)
    {
        services.AddSingleton<MessageStore>();
        services.AddHostedService<MessageStoreConsumer>();

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("messages.list", ControlRole.Viewer, async (command, ct) =>
        {
            if (!TryQuery(command, out var query, out var error))
                return new ControlResult(ControlOutcome.Invalid, error);
            var found = await sp.GetRequiredService<MessageStore>().FindAsync(query, ct).ConfigureAwait(false);
            return ControlResult.Ok($"{found.Count} stored message(s), newest first", found.Select(MessageStore.View).ToList());
        }));

        services.AddSingleton<IControlCommandHandler>(sp => new ControlCommandHandler("messages.replay", ControlRole.Operator, async (command, ct) =>
        {
            if (!TryQuery(command, out var query, out var error))
                return new ControlResult(ControlOutcome.Invalid, error);
            if (query.Ids is not { Count: > 0 } && query.CorrelationId is null && query.MessageType is null && query.From is null && query.Exchange is null)
                return new ControlResult(ControlOutcome.Invalid, "messages.replay needs 'ids' or a filter (correlationId, messageType, from/to, exchange): it never replays the whole store");
            var destination = command.Target;
            if (destination is not null && !Integration.Patterns.Routing.RouteSender.IsValidQueueName(destination))
                return new ControlResult(ControlOutcome.Invalid, $"'{destination}' is not a valid queue name");
            var store = sp.GetRequiredService<MessageStore>();
            var found = await store.FindAsync(query, ct).ConfigureAwait(false);
            if (found.Count == 0)
                return new ControlResult(ControlOutcome.NotFound, "No stored message matches");
            var replayed = await store.ReplayAsync(found, destination, ct).ConfigureAwait(false);
            return ControlResult.Ok($"Replayed {replayed.Count} message(s) to {(destination is null ? "their original exchanges" : $"queue '{destination}'")} (each confirmed by the broker)",
                new { replayed = replayed.Count, ids = replayed });
        }));

        return services;
    }

    /// <summary>Maps <c>GET /api/control/messages</c> and <c>POST /api/control/messages/replay</c>.</summary>
    public static RouteGroupBuilder MapMessageStore(this RouteGroupBuilder control)
    {
        ArgumentNullException.ThrowIfNull(control);
        control.MapGet("/messages", (HttpContext http, ControlBus bus, ControlAuthorization auth, string? correlationId, string? type, string? from, string? to,
                string? exchange, int? take) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("messages.list", Arguments: Args(("correlationId", correlationId), ("messageType", type),
                ("from", from), ("to", to), ("exchange", exchange), ("take", take?.ToString(CultureInfo.InvariantCulture))))));
        control.MapPost("/messages/replay", (HttpContext http, ControlBus bus, ControlAuthorization auth, ReplayRequest body) =>
            ControlBusEndpoints.Run(http, bus, auth, new ControlCommand("messages.replay", body.Destination, Args(
                ("ids", body.Ids is { Count: > 0 } ? string.Join(',', body.Ids) : null), ("correlationId", body.CorrelationId), ("messageType", body.MessageType),
                ("from", body.From?.ToString("O")), ("to", body.To?.ToString("O")), ("exchange", body.Exchange),
                ("take", body.Take?.ToString(CultureInfo.InvariantCulture))))));
        return control;
    }

    static bool TryQuery(ControlCommand command, out MessageQuery query, out string error)
    {
        query = new MessageQuery(null, null, null, null, null);
        error = "";
        DateTimeOffset? Time(string name, ref string failure)
        {
            var text = command.Argument(name);
            if (text is null)
                return null;
            if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
                return at;
            failure = $"'{name}' must be an ISO 8601 time, not '{text}'";
            return null;
        }

        var from = Time("from", ref error);
        var to = Time("to", ref error);
        if (error.Length > 0)
            return false;
        List<long>? ids = null;
        if (command.Argument("ids") is { } idText)
        {
            ids = [];
            foreach (var part in idText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                {
                    error = $"'ids' must be stored message ids separated by commas, not '{idText}'";
                    return false;
                }

                ids.Add(id);
            }
        }

        var take = int.TryParse(command.Argument("take"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : ids?.Count ?? 50;
        query = new MessageQuery(command.Argument("correlationId"), command.Argument("messageType"), from, to, command.Argument("exchange"), Math.Max(take, ids?.Count ?? 0), ids);
        return true;
    }

    /// <summary>The W3C trace id in the <c>MT-Activity-Id</c> header (<c>00-{trace}-{span}-{flags}</c>), if any.</summary>
    static string? TraceId(string headers)
    {
        using var document = JsonDocument.Parse(headers);
        return document.RootElement.TryGetProperty("MT-Activity-Id", out var activity) && activity.ValueKind == JsonValueKind.String
            && activity.GetString()!.Split('-') is [_, { Length: 32 } trace, ..] ? trace : null;
    }

    /// <summary>The arguments that have a value, for a <see cref="ControlCommand"/>.</summary>
    internal static Dictionary<string, string> Args(params (string Name, string? Value)[] values) =>
        values.Where(v => !string.IsNullOrEmpty(v.Value)).ToDictionary(v => v.Name, v => v.Value!, StringComparer.Ordinal);

    /// <summary>
    /// For the dashboard's journeys: messages that share a conversation, a correlation id, an initiator or a trace (a
    /// route's copies of one message carry its trace), or of which one caused the other, are one journey.
    /// </summary>
    internal static object Journeys(IReadOnlyList<StoredMessage> messages)
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
}
