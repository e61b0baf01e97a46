namespace Integration.Hosting;

/// <summary>Health check conventions shared by every integration library.</summary>
public static class IntegrationHealth
{
    /// <summary>Tag of the checks that decide readiness (<c>/health/ready</c>).</summary>
    public const string Ready = "ready";
}
