using System.ComponentModel.DataAnnotations;
using Integration.Sagas.Postgres;

namespace Integration.Host.Fulfillment;

/// <summary>The order fulfillment saga's settings, bound from <c>Integration:Fulfillment</c> and validated at start.</summary>
public sealed class FulfillmentOptions
{
    /// <summary>Configuration section.</summary>
    public const string Section = "Integration:Fulfillment";

    /// <summary>Orders whose total quantity exceeds this need regional approval. Default 100.</summary>
    [Range(0, 1_000_000)] public int ApprovalQuantityLimit { get; set; } = 100;

    /// <summary>How long an order waits for approval before it fails (and its reservation is released). Default 4 hours.</summary>
    public TimeSpan ApprovalTimeout { get; set; } = TimeSpan.FromHours(4);

    /// <summary>How the saga repository handles concurrent messages for one order. Default optimistic.</summary>
    public SagaConcurrencyMode ConcurrencyMode { get; set; } = SagaConcurrencyMode.Optimistic;

    /// <summary>
    /// Ordered processing per order across competing hosts: 0 (default) = one queue <c>order-fulfillment</c>; N (1-256) =
    /// the saga's events spread by order id over <c>order-fulfillment-p0</c> .. <c>-p{N-1}</c>, single-active-consumer
    /// queues, so one order's events are handled in order by one host at a time (docs/scaling.md, Partitions).
    /// </summary>
    [Range(0, 256)] public int Partitions { get; set; }

    /// <summary>With <see cref="Partitions"/>: saga events in flight per partition in one host, never two of one order. Default 8.</summary>
    [Range(1, 1000)] public int PartitionConcurrency { get; set; } = 8;

    /// <summary>
    /// With <see cref="Partitions"/>: order sagas whose last committed state each host keeps, so an event of an order the
    /// host owns skips the saga's <c>SELECT</c> (the <c>UPDATE</c>'s <c>xmin</c> check still guards the row; a stale entry after
    /// a partition moved is read again). 0 turns it off. Default 10,000.
    /// </summary>
    [Range(0, 1_000_000)] public int InstanceCacheSize { get; set; } = 10_000;

    /// <summary>How long each simulated downstream service takes (for demos and crash tests). Default none.</summary>
    public TimeSpan SimulatedServiceDelay { get; set; } = TimeSpan.Zero;

    /// <summary>Rules the annotations cannot express, each naming its full key.</summary>
    internal static IEnumerable<string> Validate(FulfillmentOptions options)
    {
        if (options.ApprovalTimeout < TimeSpan.FromSeconds(1) || options.ApprovalTimeout > TimeSpan.FromDays(30))
            yield return $"{Section}:ApprovalTimeout must be between 00:00:01 and 30.00:00:00 (was {options.ApprovalTimeout})";
        if (options.SimulatedServiceDelay < TimeSpan.Zero || options.SimulatedServiceDelay > TimeSpan.FromMinutes(5))
            yield return $"{Section}:SimulatedServiceDelay must be between 00:00:00 and 00:05:00 (was {options.SimulatedServiceDelay})";
        if (!Enum.IsDefined(options.ConcurrencyMode))
            yield return $"{Section}:ConcurrencyMode must be Optimistic or Pessimistic";
    }
}
