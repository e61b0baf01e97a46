namespace Integration.Testing;

/// <summary>Polls a condition until it holds or the timeout passes; for asserting on asynchronous outcomes without sleeps.</summary>
public static class Eventually
{
    /// <summary>True as soon as <paramref name="condition"/> holds (checked every <paramref name="interval"/>, 50 ms by default); false once <paramref name="timeout"/> passed.</summary>
    public static async Task<bool> TrueAsync(Func<Task<bool>> condition, TimeSpan timeout, TimeSpan? interval = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var deadline = DateTime.UtcNow + timeout;
        var delay = interval ?? TimeSpan.FromMilliseconds(50);
        while (true)
        {
            if (await condition().ConfigureAwait(false))
                return true;
            if (DateTime.UtcNow >= deadline)
                return false;
            await Task.Delay(delay).ConfigureAwait(false);
        }
    }
}
