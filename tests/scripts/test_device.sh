#!/usr/bin/env bash
# --device / --gpu on every command that runs a model, without relying on a
# GPU: bad names are usage errors (exit 2); --device cpu and auto work where
# there is no GPU; --device cuda where there is none (or in a build without
# CUDA) is a clear error and exit 1, never a crash or a silent CPU run. On a
# machine with a GPU the no-GPU checks are skipped and a GPU index that does
# not exist is checked instead (tests/gpu/run.sh checks the rest there).
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}"
dir="$GROK_TMP/device"; mkdir -p "$dir"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

m="$dir/m.gguf"
"$GROK" new "$m" --embd 64 --layers 1 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 \
  --vocab 300 --ctx 128 --seed 3 >/dev/null || { echo "cannot create model"; exit 1; }
printf 'one two three four five six seven eight nine ten\n' >"$dir/t.txt"

ver=$("$GROK" --version)
if grep -q '^cuda: \(not built\|built, no GPU\|built, [0-9]* GPU\)' <<<"$ver"; then ok; else bad "--version says nothing of CUDA: $ver"; fi
gpu=0
grep -q '^cuda: built, [0-9]* GPU' <<<"$ver" && gpu=1

# every command, with its arguments after --device X
declare -A CMDS=(
  [run]="run -m $m -p hello -n 2 --no-stats"
  [eval]="eval -m $m --tokens 1,2,3 --logits $dir/l.f32"
  [perplexity]="perplexity -m $m -f $dir/t.txt --ctx 8"
  [bench]="bench -m $m -p 4 -n 2 -r 1 --no-bw"
  [chat]="chat -m $m -n 2"
  [serve]="serve -m $m --port 0"
)
for name in "${!CMDS[@]}"; do
  # shellcheck disable=SC2086
  set -- ${CMDS[$name]}
  "$GROK" "$@" --device bogus </dev/null >"$dir/out" 2>&1
  rc=$?
  if [ $rc = 2 ] && grep -q "device" "$dir/out"; then ok; else bad "$name --device bogus: exit $rc, $(head -2 "$dir/out")"; fi
  if [ $gpu = 0 ]; then
    # cuda: an error naming the way out, exit 1, before any output
    timeout 20 "$GROK" "$@" --device cuda </dev/null >"$dir/out" 2>&1
    rc=$?
    if [ $rc = 1 ] && grep -q -- "--device cpu" "$dir/out"; then ok; else bad "$name --device cuda without a GPU: exit $rc, $(head -3 "$dir/out")"; fi
  fi
done
if [ $gpu = 0 ]; then
  for d in cpu auto; do
    out=$("$GROK" run -m "$m" -p hello -n 3 --temp 0 --device $d 2>"$dir/err")
    if [ $? = 0 ] && [ -n "$out" ]; then ok; else bad "run --device $d: $(cat "$dir/err")"; fi
  done
  a=$("$GROK" run -m "$m" -p hello -n 8 --temp 0 --no-stats --device cpu 2>/dev/null)
  b=$("$GROK" run -m "$m" -p hello -n 8 --temp 0 --no-stats 2>/dev/null)
  if [ "$a" = "$b" ]; then ok; else bad "auto without a GPU is not the CPU: '$a' vs '$b'"; fi
else
  "$GROK" run -m "$m" -p hello -n 2 --device cuda --gpu 1000 >"$dir/out" 2>&1
  rc=$?
  if [ $rc != 0 ] && grep -q -- "--gpu" "$dir/out"; then ok; else bad "--gpu 1000: exit $rc, $(head -2 "$dir/out")"; fi
fi
echo "device: $pass passed, $fail failed"
[ "$fail" = 0 ]
