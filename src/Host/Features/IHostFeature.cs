using MassTransit;

namespace Integration.Host.Features;

/// <summary>
/// One slice of the sample (orders, parts routes, the fulfillment saga, ...). The host calls each member once, in this
/// order: services, bus registrations, HTTP endpoints. Every member is optional. Tables are mapped in
/// <see cref="Persistence.HostDbContext"/>.
/// </summary>
public interface IHostFeature
{
    /// <summary>Name shown on the host's index page and in logs.</summary>
    string Name { get; }

    /// <summary>Registers services and options.</summary>
    void AddServices(IHostApplicationBuilder builder) { }

    /// <summary>Registers consumers, sagas, routes and activities with MassTransit; settings come from <paramref name="configuration"/> (features are shared, keep no state).</summary>
    void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration) { }

    /// <summary>Maps HTTP endpoints.</summary>
    void MapEndpoints(IEndpointRouteBuilder endpoints) { }
}
