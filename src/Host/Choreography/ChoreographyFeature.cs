using Integration.Host.Features;
using MassTransit;

namespace Integration.Host.Choreography;

/// <summary>
/// Choreography sample: stock, shipping and notification services react to each other's events (parts requested →
/// reserved → shipment scheduled → device notified), each with a compensating event, and no coordinator.
/// <c>POST /api/field-requests</c> starts a chain; every message in it carries the request id as CorrelationId.
/// </summary>
public sealed class ChoreographyFeature : IHostFeature
{
    /// <summary>Body of <c>POST /api/field-requests</c>.</summary>
    public sealed record FieldRequest(Guid? RequestId, string? DeviceId, string? Site, string? Sku, int Quantity);

    /// <inheritdoc />
    public string Name => "choreography";

    /// <inheritdoc />
    public void AddBus(IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(bus);
        bus.AddConsumer<FieldStockService>().Endpoint(e => e.Name = "choreography-stock");
        bus.AddConsumer<FieldShippingService>().Endpoint(e => e.Name = "choreography-shipping");
        bus.AddConsumer<DeviceNotificationService>().Endpoint(e => e.Name = "choreography-notification");
    }

    /// <inheritdoc />
    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPost("/api/field-requests", async (FieldRequest? request, IPublishEndpoint publish, CancellationToken cancellationToken) =>
        {
            var errors = new Dictionary<string, string[]>();
            if (request is null)
                errors["body"] = ["a JSON request is required"];
            else
            {
                if (string.IsNullOrWhiteSpace(request.DeviceId) || request.DeviceId.Length > 100)
                    errors["deviceId"] = ["is required, at most 100 characters"];
                if (string.IsNullOrWhiteSpace(request.Site) || request.Site.Length > 100)
                    errors["site"] = ["is required, at most 100 characters"];
                if (string.IsNullOrWhiteSpace(request.Sku) || request.Sku.Length > 64)
                    errors["sku"] = ["is required, at most 64 characters"];
                if (request.Quantity is < 1 or > 10_000)
                    errors["quantity"] = ["must be 1 to 10000"];
                if (request.RequestId == Guid.Empty)
                    errors["requestId"] = ["must not be the empty GUID (leave it out to have one assigned)"];
            }

            if (errors.Count > 0)
                return Results.ValidationProblem(errors);

            var requestId = request!.RequestId ?? NewId.NextGuid();
            await publish.Publish(new FieldPartsRequested(requestId, request.DeviceId!, request.Site!, request.Sku!, request.Quantity), cancellationToken)
                .ConfigureAwait(false);
            return Results.Accepted(value: new { requestId });
        });
    }
}
