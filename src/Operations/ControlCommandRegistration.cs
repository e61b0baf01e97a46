using Microsoft.Extensions.DependencyInjection;

namespace Integration.Operations;

/// <summary>Control commands added by a library or a feature outside the <c>AddIntegrationOperations</c> callback.</summary>
public static class ControlCommandRegistration
{
    /// <summary>
    /// Adds a control command exactly as <see cref="OperationsBuilder.AddCommand{TCommand, THandler}"/> does, from code
    /// that only sees the service collection (a library's registration call, a feature). It takes effect when the host
    /// also calls <c>AddIntegrationOperations</c>; without it the registration is unused.
    /// </summary>
    public static IServiceCollection AddIntegrationControlCommand<TCommand, THandler>(this IServiceCollection services, string action, ControlRole role)
        where TCommand : class
        where THandler : class, IControlHandler<TCommand>
    {
        ArgumentNullException.ThrowIfNull(services);
        new OperationsBuilder(services).AddCommand<TCommand, THandler>(action, role);
        return services;
    }
}
