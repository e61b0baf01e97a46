using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Integration.Sagas.Postgres;

/// <summary>Which database failures mean "another message for the same saga instance got there first".</summary>
static class SagaConflicts
{
    /// <summary>True for a lost optimistic check, a duplicate instance insert (23505), a serialization failure (40001) or a deadlock (40P01).</summary>
    public static bool IsConflict(Exception exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            switch (current)
            {
                case DbUpdateConcurrencyException:
                    return true;
                case PostgresException { SqlState: PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected }:
                    return true;
            }
        }

        return false;
    }
}

/// <summary>Thrown when a message still conflicted after the configured number of retries.</summary>
public sealed class SagaConcurrencyException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SagaConcurrencyException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public SagaConcurrencyException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the last conflict.</summary>
    public SagaConcurrencyException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
