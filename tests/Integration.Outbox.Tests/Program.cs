namespace Integration.Outbox.Tests;

/// <summary>
/// The test assembly's entry point (instead of the one the test SDK generates): the test runner never calls it;
/// <c>dotnet Integration.Outbox.Tests.dll consumer</c> runs <see cref="ConsumerProcess"/>, the inbox consumer specs kill.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args) =>
        args is ["consumer"] ? await ConsumerProcess.RunAsync() : 0;
}
