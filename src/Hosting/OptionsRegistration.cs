using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Integration.Hosting;

/// <summary>
/// The one way options are bound in this framework: a configuration section, data annotations plus rules the annotations
/// cannot express, validated when the host starts (<c>ValidateOnStart</c>), every failure naming the full key and the
/// environment variable that sets it.
/// </summary>
public static class OptionsRegistration
{
    /// <summary>
    /// Binds <typeparamref name="TOptions"/> to <paramref name="section"/> and validates it at start: its data annotations
    /// and <paramref name="rules"/> (each returned message should name its full key, e.g. <c>Integration:RabbitMq:Host</c>).
    /// </summary>
    public static OptionsBuilder<TOptions> AddIntegrationOptions<TOptions>(this IServiceCollection services, string section,
        Func<TOptions, IEnumerable<string>>? rules = null)
        where TOptions : class
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(section);
        services.AddSingleton<IValidateOptions<TOptions>>(new SectionValidator<TOptions>(section, rules));
        return services.AddOptions<TOptions>().BindConfiguration(section).ValidateOnStart();
    }

    sealed class SectionValidator<TOptions>(string section, Func<TOptions, IEnumerable<string>>? rules) : IValidateOptions<TOptions>
        where TOptions : class
    {
        public ValidateOptionsResult Validate(string? name, TOptions options)
        {
            var failures = new List<string>();
            var results = new List<ValidationResult>();
            if (!Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true))
            {
                foreach (var result in results)
                {
                    foreach (var member in result.MemberNames.DefaultIfEmpty(""))
                        failures.Add($"{section}:{member}: {result.ErrorMessage} (set it in appsettings.json or as {section.Replace(":", "__", StringComparison.Ordinal)}__{member})");
                }
            }

            if (failures.Count == 0 && rules is not null)
                failures.AddRange(rules(options));
            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
