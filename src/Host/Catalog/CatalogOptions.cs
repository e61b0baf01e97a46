namespace Integration.Host.Catalog;

/// <summary>The parts catalog's settings, bound from <c>Integration:Catalog</c> and validated at start.</summary>
public sealed class CatalogOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Catalog";

    /// <summary>How long a part or a list stays cached when no <c>PartUpdated</c> evicts it first. Default 5 minutes.</summary>
    public TimeSpan CacheTtl { get; set; } = TimeSpan.FromMinutes(5);

    internal static IEnumerable<string> Validate(CatalogOptions options)
    {
        if (options.CacheTtl < TimeSpan.FromSeconds(1) || options.CacheTtl > TimeSpan.FromDays(1))
            yield return $"{Section}:CacheTtl must be between 00:00:01 and 1.00:00:00 (was {options.CacheTtl})";
    }
}
