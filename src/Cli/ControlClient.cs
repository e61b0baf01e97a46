using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Integration.Cli;

/// <summary>The exit codes of the <c>integration</c> tool, for scripts.</summary>
static class ExitCodes
{
    /// <summary>Done; nothing wrong found.</summary>
    public const int Ok = 0;

    /// <summary>Failed messages found (<c>failures list</c>), a check failed (<c>check-env</c>), or a retry moved fewer than asked.</summary>
    public const int Failure = 1;

    /// <summary>Bad command line, or the host refused the arguments (400).</summary>
    public const int Usage = 2;

    /// <summary>The host did not answer (connection refused, timeout, DNS).</summary>
    public const int Unreachable = 3;

    /// <summary>No key, an unknown key (401), or a key whose role may not do this (403).</summary>
    public const int Unauthorized = 4;

    /// <summary>What was asked for does not exist (404): a failure group, a saga instance, an endpoint.</summary>
    public const int NotFound = 5;

    /// <summary>The host answered with an error of its own (5xx) or something that is not the control API.</summary>
    public const int HostError = 6;
}

/// <summary>A call that ended the command with <see cref="ExitCode"/>; <see cref="Exception.Message"/> says why.</summary>
sealed class CliException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>The host's HTTP control API (<c>/api/control</c>) and health endpoints, with the key in <c>X-Api-Key</c>.</summary>
sealed class ControlClient(HttpClient http, string? key)
{
    /// <summary>GET; the JSON body, or null for a 404 when <paramref name="allowNotFound"/>.</summary>
    public async Task<JsonElement?> GetAsync(string path, CancellationToken cancellationToken, bool allowNotFound = false, bool allowUnavailable = false)
    {
        var (status, body) = await SendAsync(HttpMethod.Get, path, null, cancellationToken).ConfigureAwait(false);
        if (allowNotFound && status == HttpStatusCode.NotFound)
            return null;
        if (allowUnavailable && status == HttpStatusCode.ServiceUnavailable)
            return body;
        return Check(path, status, body);
    }

    /// <summary>POST with an optional JSON body; the JSON answer.</summary>
    public async Task<JsonElement> PostAsync(string path, object? content, CancellationToken cancellationToken)
    {
        var (status, body) = await SendAsync(HttpMethod.Post, path, content, cancellationToken).ConfigureAwait(false);
        return Check(path, status, body);
    }

    /// <summary>The control API's <c>data</c> of a wrapped answer (<c>{outcome, message, data}</c>), or the answer itself.</summary>
    public static JsonElement Data(JsonElement answer) =>
        answer.ValueKind == JsonValueKind.Object && answer.TryGetProperty("data", out var data) ? data : answer;

    async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpMethod method, string path, object? content, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(path.TrimStart('/'), UriKind.Relative));
        if (!string.IsNullOrEmpty(key))
            request.Headers.Add("X-Api-Key", key);
        if (content is not null)
            request.Content = JsonContent.Create(content);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException exception)
        {
            throw new CliException(ExitCodes.Unreachable, $"The host at {http.BaseAddress} did not answer: {exception.Message}");
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new CliException(ExitCodes.Unreachable, $"The host at {http.BaseAddress} did not answer within {http.Timeout.TotalSeconds:0} s");
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            JsonElement body = default;
            if (text.Length > 0)
            {
                try
                {
                    using var document = JsonDocument.Parse(text);
                    body = document.RootElement.Clone();
                }
                catch (JsonException)
                {
                    if (response.IsSuccessStatusCode)
                        throw new CliException(ExitCodes.HostError, $"{method} {path} answered {(int)response.StatusCode} with something that is not JSON: is {http.BaseAddress} an IntegrationKit host?");
                }
            }

            return (response.StatusCode, body);
        }
    }

    JsonElement Check(string path, HttpStatusCode status, JsonElement body)
    {
        if ((int)status is >= 200 and < 300)
            return body;
        var detail = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("detail", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        var reason = detail ?? $"{(int)status} {status}";
        throw status switch
        {
            HttpStatusCode.Unauthorized => new CliException(ExitCodes.Unauthorized,
                $"Unauthorized: {reason} (give the key with --key or {Cli.KeyVariable})"),
            HttpStatusCode.Forbidden => new CliException(ExitCodes.Unauthorized, $"Forbidden: {reason}"),
            HttpStatusCode.NotFound => new CliException(ExitCodes.NotFound, $"Not found: {detail ?? path}"),
            HttpStatusCode.BadRequest => new CliException(ExitCodes.Usage, $"Refused: {reason}"),
            _ => new CliException(ExitCodes.HostError, $"{path}: the host answered {(int)status}: {reason}"),
        };
    }
}
