using Integration.Cli;
using Spectre.Console;

namespace Integration.Cli.Tests;

/// <summary>One run of the <c>integration</c> tool, in-process: its exit code and everything it printed.</summary>
public sealed record CliRun(int ExitCode, string Output)
{
    /// <summary>Runs <paramref name="args"/> with no environment variables (every setting comes from the command line), optionally over <paramref name="handler"/>.</summary>
    public static async Task<CliRun> RunAsync(string[] args, HttpMessageHandler? handler = null)
    {
        using var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 250;
        var code = await Integration.Cli.Cli.RunAsync(args, console, writer, handler, _ => null);
        return new CliRun(code, writer.ToString());
    }

    public override string ToString() => $"exit {ExitCode}:\n{Output}";
}
