#!/usr/bin/env bash
# Runs every test against a real RabbitMQ and PostgreSQL (started here when none is running).
# Usage: ./test.sh [extra dotnet test arguments, e.g. --filter Category!=Integration]
# The last line of output is: Tests: N passed, N failed[, N skipped]
set -uo pipefail
cd "$(dirname "$0")"
. scripts/services.sh
integration_services || { echo "Tests: 0 passed, 1 failed"; echo "could not start RabbitMQ/PostgreSQL" >&2; exit 1; }
integration_browser || { echo "Tests: 0 passed, 1 failed"; echo "could not install or start headless Chromium (dashboard specs)" >&2; exit 1; }
# TLS phase: a throw-away CA, a RabbitMQ node with only a peer-verifying TLS listener and a TLS-only PostgreSQL instance,
# beside the shared services (own ports, data and node name); exports INTEGRATION_TLS_* for the TLS specs, stopped at exit.
integration_tls || { echo "Tests: 0 passed, 1 failed"; echo "could not start the TLS RabbitMQ node / PostgreSQL instance (integration_tls)" >&2; exit 1; }
trap integration_tls_stop EXIT

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
results="$PWD/TestResults"
rm -rf "$results"

if ! dotnet build Integration.sln -c Release -nologo -v q -clp:ErrorsOnly; then
  echo "Tests: 0 passed, 1 failed"
  echo "build failed" >&2
  exit 1
fi

# Everything but the fault suite, test projects in parallel.
dotnet test Integration.sln -c Release --no-build -nologo --filter "FullyQualifiedName!~Integration.Reliability.Tests" \
  --logger "trx" --logger "console;verbosity=normal" --results-directory "$results" "$@"
status=$?

# The fault suite (TCP cuts, SIGKILL, competing hosts) on its own afterwards: its outage and settle timings are measured
# on a machine not also running every other test project (an outbox stall after a broker cut was seen once under that load).
dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo \
  --logger "trx;LogFileName=reliability.trx" --logger "console;verbosity=normal" --results-directory "$results" "$@"
reliability_status=$?
[ "$status" -eq 0 ] && status=$reliability_status

# The cluster phase: a local 3-node RabbitMQ cluster (scripts/services.sh, beside the shared node, never touching it)
# for the cluster fault specs (quorum queues, the connected node SIGKILLed under load), stopped afterwards. The specs'
# own vhost, traffic and observers are on node 1 of the cluster; the host lists all three nodes.
if command -v rabbitmq-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && integration_cluster_start; then
  echo "[test] cluster phase: fault specs on the 3-node RabbitMQ cluster ($INTEGRATION_RABBITMQ_CLUSTER_NODES)"
  INTEGRATION_RABBITMQ_URI="amqp://guest:guest@localhost:5681/" INTEGRATION_RABBITMQ_MANAGEMENT_URI="$INTEGRATION_RABBITMQ_CLUSTER_MANAGEMENT_URI" \
    INTEGRATION_RELIABILITY_REPORT="$results/reliability/reliability-cluster.md" \
    dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo --filter "FullyQualifiedName~ClusterFault_Specs" \
    --logger "trx;LogFileName=reliability-cluster.trx" --logger "console;verbosity=normal" --results-directory "$results"
  cluster_status=$?
  integration_cluster_stop --purge
  [ "$status" -eq 0 ] && status=$cluster_status
else
  integration_cluster_stop --purge >/dev/null 2>&1 || true
  echo "[test] NOTE: the cluster fault specs did not run (they need the rabbitmq-server package and root to start a local 3-node cluster)" >&2
fi

# Fuzzing (scripts/fuzz.sh): every fuzz target of tests/Integration.Fuzz under libFuzzer for a bounded time (20 s each,
# about 2.5 minutes in all), its corpus in the repository; a crash fails the run with the input kept under
# artifacts/fuzz/crashes. Counted as one test per target (fuzz.trx). ./soak.sh runs it longer.
FUZZ_NO_BUILD=1 FUZZ_TRX="$results/fuzz.trx" scripts/fuzz.sh "${INTEGRATION_FUZZ_SECONDS:-20}"
fuzz_status=$?
[ "$status" -eq 0 ] && status=$fuzz_status

# Packages: every library packs (README, symbols, package validation, public API baseline); then a worker host outside
# the solution, made from the integration-worker template, is built from those packages only and its spec runs against
# the same broker and database.
# Each run packs a version of its own, so a package cache never serves a stale build.
version="$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props)-ci.$(date -u +%Y%m%d%H%M%S)"
rm -rf artifacts/packages
if dotnet pack Integration.sln -c Release --no-build -nologo -v q -o artifacts/packages -p:VersionSuffix="${version#*-}" \
    -p:RepositoryCommit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"; then
  echo "[test] packed $(ls artifacts/packages/*.nupkg | wc -l) package(s) at version $version: $(cd artifacts/packages && ls *.nupkg | sed 's/\.[0-9].*//' | tr '\n' ' ')"
  # The template is installed into a private hive; the project it makes in a temporary folder restores only the freshly
  # packed packages (plus the public registry).
  scripts/template-check.sh "$version" artifacts/packages "$results"
  template_status=$?
  [ "$status" -eq 0 ] && status=$template_status
else
  echo "[test] dotnet pack failed" >&2
  status=1
fi

# Real restarts of RabbitMQ and PostgreSQL under traffic (fault suite): only after everything else finished, since a
# restart fails any test using the services at that moment, and only on services this machine runs (root: rabbitmqctl,
# pg_ctlcluster). The same cases run longer in ./soak.sh --restart-services.
_is_local() { case "$1" in *localhost*|*127.0.0.1*) return 0 ;; *) return 1 ;; esac; }
if _is_local "${INTEGRATION_RABBITMQ_URI:-}" && _is_local "${INTEGRATION_POSTGRES:-}" && [ "$(id -u)" = 0 ] && command -v rabbitmqctl >/dev/null && command -v pg_ctlcluster >/dev/null; then
  echo "[test] fault suite: real RabbitMQ and PostgreSQL restarts under traffic"
  INTEGRATION_SOAK_RESTART_SERVICES=1 INTEGRATION_RELIABILITY_REPORT="$results/reliability/reliability-restarts.md" \
    dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo --filter "FullyQualifiedName~_restarts_" \
    --logger "trx;LogFileName=reliability-restarts.trx" --logger "console;verbosity=normal" --results-directory "$results"
  restart_status=$?
  [ "$status" -eq 0 ] && status=$restart_status
else
  echo "[test] NOTE: the real RabbitMQ/PostgreSQL restart cases did not run (they need services local to this machine and root); the TCP-cut cases did" >&2
fi

passed=0; failed=0; skipped=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  p=$(get passed); f=$(get failed); t=$(get total); e=$(get executed); x=$(get error); to=$(get timeout); a=$(get aborted)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${x:-0} + ${to:-0} + ${a:-0}))
  skipped=$((skipped + ${t:-0} - ${e:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; echo "dotnet test exited with $status" >&2; fi
if [ "$((passed + failed))" -eq 0 ]; then failed=1; echo "no test ran" >&2; fi

# The failed tests by name, with the first lines of their messages, just above the summary line: a CI log is often
# read from its end only.
if [ "$failed" -gt 0 ]; then
  echo "[test] failed tests:"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$results" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for trx in sorted(glob.glob(sys.argv[1] + "/*.trx")):
    try:
        root = ET.parse(trx).getroot()
    except ET.ParseError as e:
        print(f"  {trx}: unreadable ({e})"); continue
    for r in root.iterfind(".//t:UnitTestResult", ns):
        if r.get("outcome") not in ("Failed", "Error", "Timeout", "Aborted"):
            continue
        message = r.findtext("t:Output/t:ErrorInfo/t:Message", default="", namespaces=ns).strip().splitlines()
        print(f"  {r.get('outcome')}: {r.get('testName')} ({trx.rsplit('/', 1)[-1]})")
        for m in message[:6]:
            print(f"      {m[:300]}")
PY
  else
    grep -ho '<UnitTestResult [^>]*outcome="Failed"[^>]*>' "$results"/*.trx | grep -o 'testName="[^"]*"' | sed 's/^/  /'
  fi
fi

line="Tests: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
