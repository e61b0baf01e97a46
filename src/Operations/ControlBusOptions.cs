using System.ComponentModel.DataAnnotations;

namespace Integration.Operations;

/// <summary>Control bus access, bound from <c>Integration:ControlBus</c>. There is no default key outside Development.</summary>
public sealed class ControlBusOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:ControlBus";

    /// <summary>Keys that may call the control bus. With none, every control call is refused (401).</summary>
    public List<ControlApiKey> ApiKeys { get; set; } = [];

    /// <summary>Name of the per-instance control queue prefix on RabbitMQ (each host instance gets its own queue).</summary>
    [Required] public string QueuePrefix { get; set; } = "control-bus";

    internal static IEnumerable<string> Validate(ControlBusOptions options)
    {
        var duplicate = options.ApiKeys.GroupBy(k => k.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            yield return $"{Section}:ApiKeys: the name '{duplicate.Key}' is used by more than one key";
        foreach (var (key, i) in options.ApiKeys.Select((k, i) => (k, i)))
        {
            if (key.Key.Length < 16 || string.IsNullOrWhiteSpace(key.Name))
                yield return $"{Section}:ApiKeys:{i}: a key needs a Name and a Key of at least 16 characters";
        }
    }
}

/// <summary>One caller of the control bus.</summary>
public sealed class ControlApiKey
{
    /// <summary>Who this key belongs to; written to the audit log as the actor.</summary>
    [Required] public string Name { get; set; } = "";

    /// <summary>The secret, sent as <c>X-Api-Key</c> or <c>Authorization: Bearer</c>. At least 16 characters. Never logged.</summary>
    [Required, MinLength(16)] public string Key { get; set; } = "";

    /// <summary><see cref="ControlRole.Viewer"/> may read; <see cref="ControlRole.Operator"/> may also change things.</summary>
    public ControlRole Role { get; set; } = ControlRole.Viewer;
}

/// <summary>What a control bus key may do.</summary>
public enum ControlRole
{
    /// <summary>Read-only: list routes, endpoints, audit.</summary>
    Viewer,

    /// <summary>Read and change: pause/resume, log levels, route switches.</summary>
    Operator,
}
