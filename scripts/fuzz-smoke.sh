#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, starting from
# the seed corpora in tests/fuzz/seed_NAME/ when present. Fails on a crash.
set -euo pipefail
dir=${1:-build-fuzz}
secs=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
export GROK_TOKENIZER_MODEL="$root/../shared/models/grok-1/tokenizer.model"
found=0
for f in "$dir"/fuzz_*; do
  [ -x "$f" ] || continue
  found=1
  name=$(basename "$f"); short=${name#fuzz_}
  work=$(mktemp -d)
  seeds=()
  [ -d "$root/tests/fuzz/seed_$short" ] && seeds=("$root/tests/fuzz/seed_$short")
  echo "== $name: ${secs}s"
  status=0
  "$f" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "$work" "${seeds[@]}" >"$work.log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work.log" || true
  if [ "$status" -ne 0 ]; then tail -40 "$work.log"; echo "$name failed (exit $status)"; exit 1; fi
  rm -rf "$work" "$work.log"
done
[ "$found" = 1 ] || { echo "no fuzz targets built"; exit 1; }
echo "fuzz smoke: all targets ran clean"
