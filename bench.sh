#!/usr/bin/env bash
# Benchmarks the framework against the broker's limit, each scenario against baselines measured in the same run.
# Usage: ./bench.sh [scenario...] [--count N] [--size BYTES] [--prefetch N] [--concurrency N] [--requests N] [--profile] [--chart FILE.svg]
# Starts RabbitMQ and PostgreSQL the way ./test.sh does. Prints the settings and a Markdown table.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/services.sh
integration_services
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build bench/Integration.Benchmarks/Integration.Benchmarks.csproj -c Release -nologo -v q -clp:ErrorsOnly
exec dotnet bench/Integration.Benchmarks/bin/Release/net10.0/Integration.Benchmarks.dll "$@"
