using System.Diagnostics;
using System.Security.Cryptography;

namespace Integration.Fuzz;

/// <summary>
/// The fallback engine when no native fuzzer can be installed: random byte-level mutations (flip, insert, delete,
/// duplicate, splice with another corpus file) of the corpus, in process, for a bounded time. No coverage feedback, so
/// much weaker than libFuzzer; it still finds shallow crashes. A crashing input is written to the crash folder.
/// </summary>
static class MutationLoop
{
    static readonly byte[][] Tokens = new[] { "{", "}", "[", "]", "\"", ",", ":", "<", ">", "/>", "</", "<!DOCTYPE", "&", "\n", "\"\"", "null", "1e309" }
        .Select(t => System.Text.Encoding.UTF8.GetBytes(t)).ToArray();

    public static int Run(FuzzTarget target, TimeSpan duration, string corpusDirectory, string crashDirectory)
    {
        var corpus = Directory.Exists(corpusDirectory) ? Directory.GetFiles(corpusDirectory).Select(File.ReadAllBytes).ToList() : [];
        if (corpus.Count == 0)
            corpus.Add([]);
        var random = new Random(RandomNumberGenerator.GetInt32(int.MaxValue));
        var clock = Stopwatch.StartNew();
        long executions = 0;
        while (clock.Elapsed < duration)
        {
            var input = Mutate(corpus[random.Next(corpus.Count)], corpus, random);
            executions++;
            try
            {
                target.Execute(input);
            }
            catch (FuzzFinding finding)
            {
                Directory.CreateDirectory(crashDirectory);
                var path = Path.Combine(crashDirectory, $"crash-{Convert.ToHexString(SHA1.HashData(input)).ToLowerInvariant()}");
                File.WriteAllBytes(path, input);
                Console.Error.WriteLine($"[mutate] {target.Name}: CRASH after {executions} executions, input saved to {path}");
                Console.Error.WriteLine(finding);
                return 1;
            }
        }

        Console.WriteLine($"[mutate] {target.Name}: {executions} executions in {clock.Elapsed.TotalSeconds:F0} s ({executions / Math.Max(1, clock.Elapsed.TotalSeconds):F0} exec/s), no crash");
        return 0;
    }

    static byte[] Mutate(byte[] seed, List<byte[]> corpus, Random random)
    {
        var data = new List<byte>(seed);
        for (var n = 1 + random.Next(4); n > 0; n--)
        {
            var at = data.Count == 0 ? 0 : random.Next(data.Count);
            switch (random.Next(6))
            {
                case 0 when data.Count > 0:
                    data[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    data.Insert(at, (byte)random.Next(256));
                    break;
                case 2 when data.Count > 0:
                    data.RemoveRange(at, Math.Min(data.Count - at, 1 + random.Next(8)));
                    break;
                case 3 when data.Count > 0:
                    data.InsertRange(at, data.GetRange(at, Math.Min(data.Count - at, 1 + random.Next(16))));
                    break;
                case 4:
                    data.InsertRange(at, Tokens[random.Next(Tokens.Length)]);
                    break;
                default:
                    var other = corpus[random.Next(corpus.Count)];
                    if (other.Length > 0)
                    {
                        var from = random.Next(other.Length);
                        data.InsertRange(at, other.AsSpan(from, Math.Min(other.Length - from, 1 + random.Next(32))).ToArray());
                    }

                    break;
            }
        }

        return data.Count > 65536 ? data.GetRange(0, 65536).ToArray() : data.ToArray();
    }
}
