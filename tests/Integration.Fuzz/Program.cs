using SharpFuzz;

namespace Integration.Fuzz;

/// <summary>
/// Entry point of the fuzzer (scripts/fuzz.sh): <c>Integration.Fuzz &lt;target&gt;</c> under the libFuzzer driver;
/// <c>Integration.Fuzz --mutate &lt;target&gt; &lt;seconds&gt; &lt;corpus&gt; &lt;crashes&gt;</c> is the in-process fallback
/// (random mutations of the corpus, no coverage feedback: weaker); <c>--list</c> names the targets;
/// <c>--run &lt;target&gt; &lt;file&gt;...</c> replays files.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 1 && args[0] == "--list")
        {
            foreach (var target in FuzzTargets.All)
                Console.WriteLine($"{target.Name}\t{target.Description}");
            return 0;
        }

        if (args.Length >= 2 && args[0] == "--run")
        {
            var target = FuzzTargets.Get(args[1]);
            var failed = 0;
            foreach (var file in args.Skip(2))
            {
                try
                {
                    target.Execute(File.ReadAllBytes(file));
                }
                catch (FuzzFinding finding)
                {
                    failed++;
                    Console.Error.WriteLine($"{file}: {finding}");
                }
            }

            return failed == 0 ? 0 : 1;
        }

        if (args.Length == 5 && args[0] == "--mutate")
            return MutationLoop.Run(FuzzTargets.Get(args[1]), TimeSpan.FromSeconds(int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture)), args[3], args[4]);

        if (args.Length == 1)
        {
            var target = FuzzTargets.Get(args[0]);
            Fuzzer.LibFuzzer.Run(span => target.Execute(span));
            return 0;
        }

        Console.Error.WriteLine("usage: Integration.Fuzz <target> | --list | --run <target> <file>... | --mutate <target> <seconds> <corpus> <crashes>");
        return 2;
    }
}
