// Placeholder entry point until the scenarios land (issue: benchmark harness).
Console.WriteLine("Integration benchmarks: no scenarios yet.");
