using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace Integration.Host.Features;

/// <summary>
/// One slice of the host (orders, parts routes, sagas, ...). The host calls each member once, in this order:
/// services, database model, bus registrations, bus configuration, HTTP endpoints. Every member is optional.
/// </summary>
public interface IHostFeature
{
    /// <summary>Name shown on the host's index page and in logs.</summary>
    string Name { get; }

    /// <summary>Registers services and options.</summary>
    void AddServices(IHostApplicationBuilder builder) { }

    /// <summary>Adds this feature's entities to the host's <see cref="Persistence.HostDbContext"/>.</summary>
    void ConfigureModel(ModelBuilder modelBuilder) { }

    /// <summary>Registers consumers, sagas and activities with MassTransit; settings come from <paramref name="configuration"/> (features are shared, keep no state).</summary>
    void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration) { }

    /// <summary>Configures receive endpoints or bus-level settings on RabbitMQ.</summary>
    void ConfigureBus(IBusRegistrationContext context, IRabbitMqBusFactoryConfigurator bus) { }

    /// <summary>Maps HTTP endpoints.</summary>
    void MapEndpoints(IEndpointRouteBuilder endpoints) { }
}
