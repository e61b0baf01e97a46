namespace Integration.Testing;

/// <summary>Polls a condition until it holds or the timeout passes; for asserting on asynchronous outcomes without sleeps.</summary>
public static class Eventually
{
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
