#!/usr/bin/env bash
# The main job: makes sure RabbitMQ and PostgreSQL run, then runs the worker host with the sample integration.
# The host applies database migrations when it starts. Stop it with Ctrl+C (a graceful stop finishes in-flight messages).
# Usage: ./run.sh [--urls http://0.0.0.0:5080]
set -euo pipefail
cd "$(dirname "$0")"
. scripts/services.sh
integration_services

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
urls="${ASPNETCORE_URLS:-http://localhost:5080}"
if [ "${1:-}" = "--urls" ] && [ -n "${2:-}" ]; then urls="$2"; fi

# Local services from scripts/services.sh; anything already set in the environment wins.
export ASPNETCORE_ENVIRONMENT="${ASPNETCORE_ENVIRONMENT:-Development}"
export Integration__RabbitMq__Host="${Integration__RabbitMq__Host:-localhost}"
export Integration__RabbitMq__Username="${Integration__RabbitMq__Username:-guest}"
export Integration__RabbitMq__Password="${Integration__RabbitMq__Password:-guest}"
export Integration__Postgres__ConnectionString="${Integration__Postgres__ConnectionString:-Host=localhost;Port=5432;Database=integration;Username=postgres;Password=postgres}"

dotnet build src/Host/Integration.Host.csproj -c Release -nologo -v q -clp:ErrorsOnly
cat <<MSG
Integration host starting on $urls
  health:     $urls/health/ready
  metrics:    $urls/metrics
  RabbitMQ:   http://localhost:15672 (guest/guest)
Stop with Ctrl+C.
MSG
# Run the built host itself (not `dotnet run`), so Ctrl+C and SIGTERM reach it and it stops gracefully.
cd src/Host
exec dotnet bin/Release/net10.0/Integration.Host.dll --urls "$urls"
