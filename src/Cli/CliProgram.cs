using Spectre.Console;

namespace Integration.Cli;

/// <summary>Entry point of the <c>integration</c> tool.</summary>
static class CliProgram
{
    static async Task<int> Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        return await Cli.RunAsync(args, AnsiConsole.Console, Console.Out, cancellationToken: cancel.Token).ConfigureAwait(false);
    }
}
