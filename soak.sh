#!/usr/bin/env bash
# Soak form of the fault-injection suite (docs/reliability.md): each fault scenario runs with traffic for N seconds,
# the fault injected again every 20 s, then every message is accounted for. The table goes to the output and to
# TestResults/reliability/reliability-faults.md (host logs in TestResults/reliability/hosts/).
#
# Usage: ./soak.sh [SECONDS_PER_FAULT] [--restart-services] [--strict]
#   SECONDS_PER_FAULT   traffic per scenario (default 300)
#   --restart-services  also restart the real RabbitMQ (rabbitmqctl stop_app/start_app) and PostgreSQL
#                       (pg_ctlcluster restart): needs root, and breaks any other test run using those services
#   --strict            fail on the known issues too (the default now; INTEGRATION_RELIABILITY_STRICT=0 turns it off)
set -uo pipefail
cd "$(dirname "$0")"

seconds=300
for argument in "$@"; do
  case "$argument" in
    --restart-services) export INTEGRATION_SOAK_RESTART_SERVICES=1 ;;
    --strict) export INTEGRATION_RELIABILITY_STRICT=1 ;;
    ''|*[!0-9]*) echo "usage: ./soak.sh [SECONDS_PER_FAULT] [--restart-services] [--strict]" >&2; exit 2 ;;
    *) seconds=$argument ;;
  esac
done
export INTEGRATION_SOAK_SECONDS=$seconds

. scripts/services.sh
integration_services || { echo "could not start RabbitMQ/PostgreSQL" >&2; exit 1; }
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

dotnet build tests/Integration.Reliability.Tests -c Release -nologo -v q -clp:ErrorsOnly || { echo "build failed" >&2; exit 1; }
dotnet test tests/Integration.Reliability.Tests -c Release --no-build -nologo \
  --filter "FullyQualifiedName~FaultInjection" --logger "console;verbosity=normal"
