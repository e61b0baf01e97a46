#!/usr/bin/env bash
# Checks the project template the way a user meets it: installs the packed IntegrationKit.Templates into a private
# template hive (the user's own templates stay untouched), creates a project with `dotnet new integration-worker` in a
# temporary folder outside the repository, points its nuget.config at the freshly packed packages (IntegrationKit.*) plus
# nuget.org (everything else), and runs its tests against the RabbitMQ and PostgreSQL named by INTEGRATION_RABBITMQ_URI,
# INTEGRATION_RABBITMQ_MANAGEMENT_URI and INTEGRATION_POSTGRES.
#
# Usage: scripts/template-check.sh <version> <packages-dir> [results-dir]
#   version       the version just packed, e.g. 0.2.0-ci.20261201141325 (the template must have been packed at it)
#   packages-dir  the folder with IntegrationKit.Templates.<version>.nupkg and the library packages
#   results-dir   where template.trx goes (default: $TEMPLATE_RESULTS_DIR, else ./TestResults)
# Exit code: that of `dotnet test` (1 when the template cannot be installed, created or restored).
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <version> <packages-dir> [results-dir]" >&2
  exit 2
fi
version="$1"
packages="$(cd "$2" 2>/dev/null && pwd)" || { echo "[template] no packages folder $2" >&2; exit 1; }
results="${3:-${TEMPLATE_RESULTS_DIR:-$PWD/TestResults}}"
mkdir -p "$results" && results="$(cd "$results" && pwd)"
nupkg="$packages/IntegrationKit.Templates.$version.nupkg"
[ -f "$nupkg" ] || { echo "[template] $nupkg not found (packed: $(cd "$packages" && ls *.nupkg 2>/dev/null | tr '\n' ' '))" >&2; exit 1; }
for name in INTEGRATION_RABBITMQ_URI INTEGRATION_RABBITMQ_MANAGEMENT_URI INTEGRATION_POSTGRES; do
  [ -n "${!name:-}" ] || echo "[template] NOTE: $name is not set; the generated spec will fail and name it" >&2
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
work="$(mktemp -d "${TMPDIR:-/tmp}/integration-template.XXXXXX")"
trap 'rm -rf "$work"' EXIT
hive="$work/hive"
out="$work/Acme.Worker"

if ! dotnet new install "$nupkg" --debug:custom-hive "$hive" > "$work/install.log" 2>&1; then
  cat "$work/install.log" >&2
  echo "[template] dotnet new install $nupkg failed" >&2
  exit 1
fi
# The generated nuget.config takes IntegrationKit.* from the packages folder only (package source mapping), the rest
# from nuget.org; the package version is the default the pack stamped into the template.
if ! (cd "$work" && dotnet new integration-worker -n Acme.Worker -o "$out" --local-feed "$packages" --debug:custom-hive "$hive") > "$work/new.log" 2>&1; then
  cat "$work/new.log" >&2
  echo "[template] dotnet new integration-worker failed" >&2
  exit 1
fi
if ! grep -q "<IntegrationKitVersion>$version</IntegrationKitVersion>" "$out/Directory.Build.props"; then
  echo "[template] the generated Directory.Build.props does not reference IntegrationKit.* $version:" >&2
  grep -n IntegrationKitVersion "$out/Directory.Build.props" >&2
  exit 1
fi
echo "[template] created $(cd "$out" && find . -type f | wc -l) file(s) from IntegrationKit.Templates $version; testing them"

# Each pack has a version of its own, so the shared NuGet cache never serves a stale build. Restored on its own so that
# a missing package is reported as such.
if ! dotnet restore "$out" -nologo; then
  echo "[template] restore of the generated solution failed (IntegrationKit.* from $packages, the rest from nuget.org)" >&2
  exit 1
fi
dotnet test "$out" -c Release --no-restore -nologo \
  --logger "trx;LogFileName=template.trx" --logger "console;verbosity=normal" --results-directory "$results"
status=$?
echo "[template] dotnet test exited with $status; results in $results/template.trx"
exit $status
