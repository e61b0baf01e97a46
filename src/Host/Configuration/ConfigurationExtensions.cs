using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Integration.Host.Configuration;

/// <summary>Binds and validates the host's options at start: a bad value stops the host with the setting's full key.</summary>
public static class ConfigurationExtensions
{
    /// <summary>Binds <see cref="RabbitMqOptions"/>, <see cref="PostgresOptions"/> and <see cref="HostSettings"/> with start-time validation.</summary>
    public static IHostApplicationBuilder AddHostConfiguration(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddValidatedOptions<RabbitMqOptions>(RabbitMqOptions.Section, RabbitMqOptions.Validate);
        builder.AddValidatedOptions<PostgresOptions>(PostgresOptions.Section, o =>
        {
            try
            {
                _ = new NpgsqlConnectionStringBuilder(o.ConnectionString);
                return null;
            }
            catch (ArgumentException exception)
            {
                return $"{PostgresOptions.Section}:ConnectionString is not a valid Npgsql connection string: {exception.Message}";
            }
        });
        builder.AddValidatedOptions<HostSettings>(HostSettings.Section);

        var settings = builder.Configuration.GetSection(HostSettings.Section).Get<HostSettings>() ?? new HostSettings();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(settings.ShutdownTimeoutSeconds + 5));
        builder.Services.Configure<Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions>(o => o.Limits.MaxRequestBodySize = settings.MaxRequestBodyBytes);
        return builder;
    }

    /// <summary>
    /// Binds <typeparamref name="TOptions"/> to <paramref name="section"/>, validates data annotations and the extra rule at
    /// start, and reports failures by full configuration key (e.g. <c>Integration:RabbitMq:Host</c>).
    /// </summary>
    public static OptionsBuilder<TOptions> AddValidatedOptions<TOptions>(this IHostApplicationBuilder builder, string section,
        Func<TOptions, string?>? rule = null)
        where TOptions : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddSingleton<IValidateOptions<TOptions>>(new SectionValidator<TOptions>(section, rule));
        return builder.Services.AddOptions<TOptions>().BindConfiguration(section).ValidateOnStart();
    }

    sealed class SectionValidator<TOptions>(string section, Func<TOptions, string?>? rule) : IValidateOptions<TOptions>
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

            if (failures.Count == 0 && rule?.Invoke(options) is { } failure)
                failures.Add(failure);

            return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
        }
    }
}
