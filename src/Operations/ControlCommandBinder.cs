using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace Integration.Operations;

/// <summary>
/// Turns a <see cref="ControlCommand"/> (strings, as HTTP and AMQP carry them) into the action's typed command: the
/// constructor parameter <c>target</c> takes <see cref="ControlCommand.Target"/>, every other parameter the argument of
/// the same name (case-insensitive). A missing required value or one of the wrong type is refused with the action,
/// the argument and what it expects — handlers never parse strings.
/// </summary>
static class ControlCommandBinder
{
    const string TargetParameter = "target";

    public static object? Bind(ControlAction action, ControlCommand envelope, out string? error)
    {
        var constructor = action.CommandType.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        var context = new NullabilityInfoContext();
        var parameters = constructor.GetParameters();
        var values = new object?[parameters.Length];
        for (var i = 0; i < parameters.Length; i++)
        {
            var parameter = parameters[i];
            var name = parameter.Name ?? "";
            string? text;
            if (string.Equals(name, TargetParameter, StringComparison.OrdinalIgnoreCase))
                text = envelope.Target;
            else
                text = envelope.Arguments?.FirstOrDefault(a => string.Equals(a.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

            if (string.IsNullOrEmpty(text))
            {
                if (parameter.HasDefaultValue)
                {
                    values[i] = parameter.DefaultValue;
                    continue;
                }

                if (context.Create(parameter).WriteState == NullabilityState.Nullable || Nullable.GetUnderlyingType(parameter.ParameterType) is not null)
                {
                    values[i] = null;
                    continue;
                }

                error = string.Equals(name, TargetParameter, StringComparison.OrdinalIgnoreCase)
                    ? $"{action.Name} needs a target"
                    : $"{action.Name} needs argument '{name}' ({Describe(parameter.ParameterType)})";
                return null;
            }

            if (!TryConvert(text, parameter.ParameterType, out values[i]))
            {
                error = $"{action.Name}: {(string.Equals(name, TargetParameter, StringComparison.OrdinalIgnoreCase) ? "the target" : $"argument '{name}'")} must be {Describe(parameter.ParameterType)}, not '{text}'";
                return null;
            }
        }

        error = null;
        return constructor.Invoke(values);
    }

    /// <summary>The target and the other arguments of a typed command, for the audit log.</summary>
    public static (string? Target, string? Details) Describe(object command, JsonSerializerOptions json)
    {
        var properties = command.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance);
        var target = properties.FirstOrDefault(p => string.Equals(p.Name, TargetParameter, StringComparison.OrdinalIgnoreCase))?.GetValue(command) is { } value
            ? Convert.ToString(value, CultureInfo.InvariantCulture)
            : null;
        var arguments = properties.Where(p => !string.Equals(p.Name, TargetParameter, StringComparison.OrdinalIgnoreCase))
            .Select(p => (Name: JsonNamingPolicy.CamelCase.ConvertName(p.Name), Value: p.GetValue(command)))
            .Where(p => p.Value is not null)
            .ToDictionary(p => p.Name, p => p.Value);
        return (target, arguments.Count == 0 ? null : JsonSerializer.Serialize(arguments, json));
    }

    static bool TryConvert(string text, Type type, out object? value)
    {
        var target = Nullable.GetUnderlyingType(type) ?? type;
        value = null;
        var invariant = CultureInfo.InvariantCulture;
        switch (target)
        {
            case var t when t == typeof(string):
                value = text;
                return true;
            case var t when t == typeof(int):
                if (!int.TryParse(text, NumberStyles.Integer, invariant, out var i)) return false;
                value = i;
                return true;
            case var t when t == typeof(long):
                if (!long.TryParse(text, NumberStyles.Integer, invariant, out var l)) return false;
                value = l;
                return true;
            case var t when t == typeof(double):
                if (!double.TryParse(text, NumberStyles.Float, invariant, out var d) || !double.IsFinite(d)) return false;
                value = d;
                return true;
            case var t when t == typeof(bool):
                if (!bool.TryParse(text, out var b)) return false;
                value = b;
                return true;
            case var t when t == typeof(DateTimeOffset):
                if (!DateTimeOffset.TryParse(text, invariant, DateTimeStyles.AssumeUniversal, out var at)) return false;
                value = at;
                return true;
            case { IsEnum: true }:
                if (!Enum.TryParse(target, text, ignoreCase: true, out var parsed) || !Enum.IsDefined(target, parsed!)) return false;
                value = parsed;
                return true;
            case var t when t == typeof(IReadOnlyList<long>):
                var ids = new List<long>();
                foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    if (!long.TryParse(part, NumberStyles.Integer, invariant, out var id)) return false;
                    ids.Add(id);
                }

                value = ids;
                return true;
            case var t when t == typeof(IReadOnlyDictionary<string, string>):
                try
                {
                    value = JsonSerializer.Deserialize<Dictionary<string, string>>(text);
                    return value is not null;
                }
                catch (JsonException)
                {
                    return false;
                }

            default:
                throw new InvalidOperationException($"Control command parameters of type {type.Name} are not supported");
        }
    }

    static string Describe(Type type)
    {
        var target = Nullable.GetUnderlyingType(type) ?? type;
        return target switch
        {
            _ when target == typeof(int) || target == typeof(long) => "a whole number",
            _ when target == typeof(double) => "a number",
            _ when target == typeof(bool) => "true or false",
            _ when target == typeof(DateTimeOffset) => "a date and time (ISO 8601)",
            { IsEnum: true } => $"one of {string.Join(", ", Enum.GetNames(target))}",
            _ when target == typeof(IReadOnlyList<long>) => "comma-separated whole numbers",
            _ when target == typeof(IReadOnlyDictionary<string, string>) => "a JSON object of strings",
            _ => "text",
        };
    }
}
