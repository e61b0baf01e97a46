#!/usr/bin/env bash
# Soak forms of the fault suite (docs/reliability.md, Soak).
#
# Measuring soak:  ./soak.sh --minutes N [--restart-services] [--strict]
#   N minutes of orders and parts traffic through two sample hosts on one vhost and database, a fault every few minutes
#   in rotation (the second host SIGKILLed and restarted, RabbitMQ TCP cut, PostgreSQL TCP cut), the resources sampled
#   every ~10 s (host memory, GC heap, open fds, threads; broker connections, channels, queue depths; table sizes).
#   Fails on anything lost, an effect applied twice, a stuck saga or a leak (thresholds in docs/reliability.md).
#   Report: TestResults/reliability/soak.md and soak-resources.csv, the summary printed at the end.
#   --fault-every SECONDS and --sample-every SECONDS override the intervals.
#   Then every fuzz target (scripts/fuzz.sh) runs --fuzz-seconds S each (default 120; 0 skips it), longer than ./test.sh's 20 s.
#
# Per-fault soak (the older form): ./soak.sh [SECONDS_PER_FAULT] [--restart-services] [--strict]
#   each fault scenario runs with traffic for N seconds (default 300), the fault injected again every 20 s; the table
#   goes to TestResults/reliability/reliability-faults.md (host logs in TestResults/reliability/hosts/).
#
#   --restart-services  also restart the real RabbitMQ (rabbitmqctl stop_app/start_app) and PostgreSQL
#                       (pg_ctlcluster restart): needs root, and breaks any other test run using those services
#   --strict            fail on the known issues too (the default now; INTEGRATION_RELIABILITY_STRICT=0 turns it off)
set -uo pipefail
cd "$(dirname "$0")"

usage() { echo "usage: ./soak.sh --minutes N [--fault-every S] [--sample-every S] [--fuzz-seconds S] [--restart-services] [--strict]  |  ./soak.sh [SECONDS_PER_FAULT] [--restart-services] [--strict]" >&2; exit 2; }
number() { case "${1:-}" in ''|*[!0-9.]*|*.*.*) usage ;; esac; }

seconds=300
minutes=
fuzz_seconds=120
while [ $# -gt 0 ]; do
  case "$1" in
    --restart-services) export INTEGRATION_SOAK_RESTART_SERVICES=1 ;;
    --strict) export INTEGRATION_RELIABILITY_STRICT=1 ;;
    --minutes) number "${2:-}"; minutes=$2; shift ;;
    --minutes=*) minutes=${1#--minutes=}; number "$minutes" ;;
    --fault-every) number "${2:-}"; export INTEGRATION_SOAK_FAULT_EVERY_SECONDS=$2; shift ;;
    --sample-every) number "${2:-}"; export INTEGRATION_SOAK_SAMPLE_SECONDS=$2; shift ;;
    --fuzz-seconds) case "${2:-}" in ''|*[!0-9]*) usage ;; esac; fuzz_seconds=$2; shift ;;
    ''|*[!0-9]*) usage ;;
    *) seconds=$1 ;;
  esac
  shift
done

. scripts/services.sh
integration_services || { echo "could not start RabbitMQ/PostgreSQL" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

dotnet build tests/Integration.Reliability.Tests -c Release -nologo -v q -clp:ErrorsOnly || { echo "build failed" >&2; exit 1; }

if [ -n "$minutes" ]; then
  export INTEGRATION_SOAK_MINUTES=$minutes
  report=TestResults/reliability/soak.md
  rm -f "$report"
  dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo \
    --filter "FullyQualifiedName~Soak_Specs" --logger "console;verbosity=normal"
  status=$?
  echo
  if [ -f "$report" ]; then cat "$report"; else echo "no soak report was written ($report)" >&2; [ "$status" -eq 0 ] && status=1; fi
  echo "soak: exit $status (report $report, series TestResults/reliability/soak-resources.csv)"
  if [ "$fuzz_seconds" -gt 0 ]; then
    scripts/fuzz.sh "$fuzz_seconds"
    fuzz_status=$?
    echo "soak: fuzzing ${fuzz_seconds} s per target, exit $fuzz_status"
    [ "$status" -eq 0 ] && status=$fuzz_status
  fi
  exit "$status"
fi

export INTEGRATION_SOAK_SECONDS=$seconds
dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo \
  --filter "FullyQualifiedName~FaultInjection" --logger "console;verbosity=normal"
