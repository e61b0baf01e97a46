using Integration.Outbox.Model;
using Microsoft.EntityFrameworkCore;

namespace Integration.Outbox.Writing;

/// <summary>
/// A relay of this process that sends its DbContext's commits straight from memory after the commit, instead of claiming
/// them from the table (<see cref="OutboxNotifyInterceptor"/> hands them over). The rows are written leased to it, so no
/// relay claims them while it sends; should it not mark them delivered (a crash, a failed send), the lease runs out and
/// any relay claims them as usual: the table stays the guarantee, the hand-over only saves the claim.
/// </summary>
interface IDirectDelivery
{
    /// <summary>
    /// True when this relay takes the rows <paramref name="context"/> is about to write (its DbContext type, its database,
    /// room in its queue, no ambient System.Transactions transaction): then they are written under <paramref name="token"/>
    /// until <paramref name="until"/>.
    /// </summary>
    bool TryLease(DbContext context, out Guid token, out DateTimeOffset until);

    /// <summary>
    /// Completes when this relay's direct queue has room for a commit of <paramref name="context"/>, or at once when the
    /// relay would not take it anyway (another DbContext type, direct delivery paused or stopped); waits one second at
    /// most. Async saves call it first: a writer that outruns the relay is held back briefly instead of sending its commit
    /// to the claims.
    /// </summary>
    ValueTask WaitForRoomAsync(DbContext context, CancellationToken cancellationToken);

    /// <summary>
    /// One committed transaction's messages, in write order, leased under the token. <paramref name="verify"/>: a rollback
    /// to a savepoint may have removed some; send only those still in the table.
    /// </summary>
    void Deliver(OutboxMessage[] messages, bool verify);
}
