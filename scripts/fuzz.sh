#!/usr/bin/env bash
# Fuzzes every target of tests/Integration.Fuzz (docs/security.md, "Fuzzing and properties") for a bounded time each.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
# Environment:
#   FUZZ_TARGETS="json xml"   only these targets (default: every target the project lists)
#   FUZZ_NO_BUILD=1           the solution is already built in Release (test.sh): publish without building
#   FUZZ_TRX=path.trx         also write the result as a trx file (one test per target), for test.sh's count
#   FUZZ_MERGE=1              afterwards, merge inputs that add coverage into the committed corpus (libFuzzer -merge=1);
#                             review and commit them sparingly
#   FUZZ_ENGINE=mutate        skip libFuzzer and use the in-process mutation loop (weaker: no coverage feedback)
# Engine: libFuzzer through the libfuzzer-dotnet driver (vendored C file, built with clang-14 -fsanitize=fuzzer; as root,
# clang-14 and libclang-rt-14-dev are installed with apt-get when missing), the assemblies that read bodies instrumented
# with SharpFuzz (dotnet tool sharpfuzz, .config/dotnet-tools.json). When no native engine can be had, the in-process
# mutation loop over the same corpus runs instead, and says so.
# A crash (a target's contract broken: another exception type, a timeout, too much memory) fails the script; the input
# is kept under artifacts/fuzz/crashes/<target>/ and printed as Base64. Exit code: 0 when every target ran clean.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
case "$seconds" in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

project=tests/Integration.Fuzz
out="$PWD/artifacts/fuzz"
bin="$out/bin"
rm -rf "$bin" "$out/crashes"
mkdir -p "$out/work" "$out/crashes"

log() { echo "[fuzz] $*"; }

# 1. The engine: libFuzzer (clang's runtime) with the libfuzzer-dotnet driver, else the mutation loop.
engine="${FUZZ_ENGINE:-libfuzzer}"
fuzzer_runtime() { ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; }
if [ "$engine" = libfuzzer ] && ! { command -v clang-14 >/dev/null && fuzzer_runtime; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing clang-14 and libclang-rt-14-dev (libFuzzer runtime)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null 2>&1; }
  fi
  if ! { command -v clang-14 >/dev/null && fuzzer_runtime; }; then
    log "NOTE: no libFuzzer runtime (clang-14 + libclang-rt-14-dev) could be installed: falling back to the in-process mutation loop (no coverage feedback, much weaker)"
    engine=mutate
  fi
fi
if [ "$engine" = libfuzzer ]; then
  clang-14 -O2 -fsanitize=fuzzer "$project/libfuzzer-dotnet/libfuzzer-dotnet.cc" -o "$out/libfuzzer-dotnet" ||
    { log "NOTE: the libfuzzer-dotnet driver did not build: falling back to the mutation loop"; engine=mutate; }
fi

# 2. The targets, published, then the assemblies that read bodies instrumented (ours, and the decompressors').
build_flag=(); [ "${FUZZ_NO_BUILD:-}" = 1 ] && build_flag=(--no-build)
if ! dotnet publish "$project" -c Release -nologo -v q -clp:ErrorsOnly -o "$bin" "${build_flag[@]}"; then
  log "publish of $project failed"; engine=none
fi
if [ "$engine" = libfuzzer ]; then
  dotnet tool restore >/dev/null || { log "dotnet tool restore failed"; engine=none; }
  for assembly in Integration.Patterns.dll Snappier.dll K4os.Compression.LZ4.dll K4os.Compression.LZ4.Streams.dll; do
    [ "$engine" = libfuzzer ] || break
    if ! dotnet tool run sharpfuzz "$bin/$assembly" >/dev/null; then log "sharpfuzz could not instrument $assembly"; engine=none; fi
  done
fi

targets="${FUZZ_TARGETS:-}"
if [ -z "$targets" ] && [ "$engine" != none ]; then targets=$("$bin/Integration.Fuzz" --list | cut -f1 | tr '\n' ' '); fi
log "engine: $engine; ${seconds}s per target; targets: ${targets:-none}"

# 3. Every target for the bounded time.
passed=0; failed=0; results=()
[ "$engine" = none ] && { failed=1; results+=("build|Failed|0|0|the fuzz targets did not build or instrument"); }
for target in $targets; do
  seed="$project/corpus/$target"; work="$out/work/$target"; crashes="$out/crashes/$target"
  mkdir -p "$seed" "$work" "$crashes"
  started=$(date +%s)
  if [ "$engine" = libfuzzer ]; then
    "$out/libfuzzer-dotnet" --target_path="$bin/Integration.Fuzz" --target_arg="$target" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$work" "$seed" >"$out/$target.log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$target.log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$out/$target.log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'ft: [0-9]*' "$out/$target.log" | tail -1 | grep -o '[0-9]*')
  else
    "$bin/Integration.Fuzz" --mutate "$target" "$seconds" "$seed" "$crashes" >"$out/$target.log" 2>&1
    rc=$?
    execs=$(grep -o '[0-9]* executions' "$out/$target.log" | head -1 | grep -o '[0-9]*')
    rate=$(grep -o '([0-9]* exec/s)' "$out/$target.log" | grep -o '[0-9]*')
    cov="n/a"
  fi
  elapsed=$(( $(date +%s) - started ))
  crash=$(ls "$crashes" 2>/dev/null | head -1)
  if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
    passed=$((passed + 1))
    log "$target: clean, ${execs:-?} executions, ${rate:-?} exec/s, coverage features ${cov:-?}, ${elapsed}s"
    results+=("$target|Passed|$elapsed|${execs:-0}|${rate:-0} exec/s, coverage features ${cov:-?}")
  else
    failed=$((failed + 1))
    log "$target: CRASH (exit $rc) after ${execs:-?} executions; log $out/$target.log"
    grep -E 'FuzzFinding|Unhandled exception|ERROR: libFuzzer|timeout|out-of-memory' "$out/$target.log" | head -5 | sed 's/^/[fuzz]   /'
    if [ -n "$crash" ]; then
      log "$target: input saved at $crashes/$crash (Base64: $(base64 -w0 "$crashes/$crash" | head -c 2000))"
      log "$target: replay with: $bin/Integration.Fuzz --run $target $crashes/$crash; once fixed, add it to $seed/"
    fi
    results+=("$target|Failed|$elapsed|${execs:-0}|exit $rc; input ${crash:+$crashes/$crash}; log $out/$target.log")
  fi
  if [ "${FUZZ_MERGE:-}" = 1 ] && [ "$engine" = libfuzzer ] && [ -z "$crash" ]; then
    before=$(ls "$seed" | wc -l)
    "$out/libfuzzer-dotnet" --target_path="$bin/Integration.Fuzz" --target_arg="$target" -merge=1 -timeout=10 -max_len=65536 "$seed" "$work" >"$out/$target.merge.log" 2>&1
    log "$target: merged $(( $(ls "$seed" | wc -l) - before )) input(s) that add coverage into $seed"
  fi
done

# 4. A trx for test.sh's count: one test per target.
if [ -n "${FUZZ_TRX:-}" ]; then
  mkdir -p "$(dirname "$FUZZ_TRX")"
  {
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo '<TestRun id="00000000-0000-0000-0000-00000000f022" name="fuzz" xmlns="http://microsoft.com/schemas/VisualStudio/TeamTest/2010">'
    echo '  <Results>'
    for r in "${results[@]}"; do
      IFS='|' read -r name outcome elapsed execs detail <<<"$r"
      detail=$(printf '%s' "$detail" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g; s/"/\&quot;/g')
      printf '    <UnitTestResult testName="Fuzz(%s)" outcome="%s" duration="00:00:%02d"><Output><StdOut>%s executions; %s</StdOut></Output></UnitTestResult>\n' \
        "$name" "$outcome" "$((elapsed % 60))" "$execs" "$detail"
    done
    echo '  </Results>'
    printf '  <ResultSummary outcome="%s"><Counters total="%d" executed="%d" passed="%d" failed="%d" error="0" timeout="0" aborted="0" /></ResultSummary>\n' \
      "$([ "$failed" -eq 0 ] && echo Completed || echo Failed)" "$((passed + failed))" "$((passed + failed))" "$passed" "$failed"
    echo '</TestRun>'
  } >"$FUZZ_TRX"
fi

log "Fuzz: $passed clean, $failed crashed ($engine, ${seconds}s per target)"
[ "$failed" -eq 0 ]
