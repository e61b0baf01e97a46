#!/usr/bin/env bash
# Rewrites src/*/PublicAPI.Unshipped.txt from what each library exposes now (RS0016 "not part of the declared public
# API" and RS0017 "part of the declared API but not found"). Run it after a deliberate public API change, review the diff,
# and commit it with the change. Usage: scripts/public-api.sh [library folder ...]   (default: every packable library)
set -euo pipefail
cd "$(dirname "$0")/.."
libraries=("$@")
if [ ${#libraries[@]} -eq 0 ]; then
  mapfile -t libraries < <(grep -l '<IsIntegrationLibrary>true' src/*/*.csproj | xargs -n1 dirname)
fi
for dir in "${libraries[@]}"; do
  project=$(ls "$dir"/*.csproj)
  shipped="$dir/PublicAPI.Shipped.txt"; unshipped="$dir/PublicAPI.Unshipped.txt"
  [ -f "$shipped" ] || printf '#nullable enable\n' > "$shipped"
  printf '#nullable enable\n' > "$unshipped"
  log=$(mktemp)
  # Warnings, not errors, so every missing symbol is reported in one build; no incremental build, so none is skipped.
  dotnet build "$project" -c Release -nologo --no-incremental -p:TreatWarningsAsErrors=false -p:WarningsAsErrors= -clp:NoSummary \
    -p:WarningLevel=4 > "$log" 2>&1 || true
  { printf '#nullable enable\n'
    grep -F "[$PWD/$project]" "$log" | grep -oE "warning RS0016: Symbol '.*' is not part of the declared public API" \
      | sed -E "s/^warning RS0016: Symbol '(.*)' is not part of the declared public API$/\1/" | sort -u
  } > "$unshipped"
  echo "[public-api] $dir: $(($(wc -l < "$unshipped") - 1)) symbol(s) in $(basename "$unshipped")"
  rm -f "$log"
done
