#!/usr/bin/env bash
# grok perplexity end to end: a random model's perplexity is finite and close
# to its vocabulary size (random weights predict nearly uniformly: measured
# 0.97-1.08 x n_vocab for vocabularies of 512 and 2048 and three seeds; the
# bound is 1.5x either way); the figure equals exp(mean NLL) computed in
# numpy from `grok eval` logits of each window, for one window, several
# windows with a shorter last one, and --second-half; errors for an empty,
# one-token or missing file.
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}"
SRC=${GROK_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY=/usr/bin/python3
dir="$GROK_TMP/perplexity"; mkdir -p "$dir"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

m="$dir/m.gguf"
"$GROK" new "$m" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 \
  --vocab 512 --ctx 512 --seed 4 >/dev/null || { echo "cannot create model"; exit 1; }
ppl() { "$GROK" perplexity -m "$m" -t 1 "$@"; }
value() { sed -n 's/^perplexity: \([0-9.]*\)$/\1/p' <<<"$1"; }

# ---- near the vocabulary size -----------------------------------------------
head -c 3000 "$SRC/README.md" >"$dir/long.txt"
out=$(ppl -f "$dir/long.txt" --ctx 128 2>"$dir/err1")
rc=$?
v=$(value "$out")
check '[ $rc -eq 0 ] && [ -n "$v" ] && [ "$(wc -l <<<"$out")" -eq 1 ]' "one result line on stdout (rc $rc): '$out' $(cat "$dir/err1")"
check 'awk -v p="$v" "BEGIN { exit !(p > 512 / 1.5 && p < 512 * 1.5) }"' "perplexity $v near n_vocab 512"
check 'grep -q "^\[1/[0-9]*\] perplexity [0-9.]* (" "$dir/err1"' "progress on stderr: $(head -3 "$dir/err1")"
n_win=$(sed -n 's/.* tokens, \([0-9]*\) windows of up to 128 tokens.*/\1/p' "$dir/err1")
check '[ -n "$n_win" ] && grep -q "^\[$n_win/$n_win\]" "$dir/err1"' "progress reaches the last window: $(tail -2 "$dir/err1")"
# batch size and threads do not change the result beyond rounding
out2=$(ppl -f "$dir/long.txt" --ctx 128 --batch 7 -t 2 2>/dev/null)
check '[ -n "$(value "$out2")" ] && awk -v a="$v" -v b="$(value "$out2")" "BEGIN { d = a - b; exit !(d < 0.01 * a && d > -0.01 * a) }"' \
  "--batch 7 -t 2 gives $(value "$out2"), --batch 512 gives $v"

# ---- equals exp(mean NLL) from grok eval ---------------------------------------
printf 'The quick brown fox jumps over the lazy dog. Perplexity measures surprise.' >"$dir/short.txt"
ids=$("$GROK" tokenize -m "$m" -f "$dir/short.txt")
n=$(wc -w <<<"$ids")
check '[ "$n" -ge 20 ]' "the short text has $n tokens"
# logits of each window from grok eval, then the NLL in numpy
reference() { # CTX [half]
  local ctx=$1 half=${2:-0} start=0 k=0 files=()
  local arr=($ids)
  while [ $((n - start)) -ge 2 ]; do
    local len=$((n - start < ctx ? n - start : ctx))
    local w
    w=$(IFS=,; echo "${arr[*]:start:len}")
    "$GROK" eval -m "$m" -t 1 --tokens "$w" --logits "$dir/win$k.f32" || return 1
    files+=("$dir/win$k.f32:$w")
    start=$((start + len)); k=$((k + 1))
  done
  "$PY" - "$half" "${files[@]}" <<'EOF'
import sys
import numpy as np
half = int(sys.argv[1])
nll = []
for arg in sys.argv[2:]:
    path, toks = arg.rsplit(":", 1)
    toks = [int(t) for t in toks.split(",")]
    lg = np.fromfile(path, dtype=np.float32).reshape(len(toks), -1).astype(np.float64)
    lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    first = max(1, len(toks) // 2) if half else 1
    for p in range(first, len(toks)):
        nll.append(lse[p - 1] - lg[p - 1, toks[p]])
print("%.6f" % np.exp(np.mean(nll)))
EOF
}
close() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 2e-4 * b + 1e-4) }'; }
r1=$(reference 512); g1=$(value "$(ppl -f "$dir/short.txt" --kv f32 2>/dev/null)")
check 'close "$g1" "$r1"' "one window: grok $g1, numpy $r1"
r2=$(reference 8); g2=$(value "$(ppl -f "$dir/short.txt" --kv f32 --ctx 8 2>/dev/null)")
check 'close "$g2" "$r2"' "windows of 8 tokens: grok $g2, numpy $r2"
r3=$(reference 8 1); g3=$(value "$(ppl -f "$dir/short.txt" --kv f32 --ctx 8 --second-half 2>/dev/null)")
check 'close "$g3" "$r3"' "--second-half: grok $g3, numpy $r3"
g4=$(value "$(ppl -f "$dir/short.txt" --ctx 8 2>/dev/null)")
check '[ -n "$g4" ] && awk -v a="$g4" -v b="$g2" "BEGIN { d = a - b; exit !(d < 0.01 * b && d > -0.01 * b) }"' "f16 KV $g4 vs f32 $g2"

# ---- errors -----------------------------------------------------------------------
: >"$dir/empty.txt"
ppl -f "$dir/empty.txt" >"$dir/out" 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "is empty" "$dir/err" && [ ! -s "$dir/out" ]' "empty file: rc $rc, $(cat "$dir/err")"
printf 'a' >"$dir/one.txt"
ppl -f "$dir/one.txt" >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "too short" "$dir/err"' "one-token file: rc $rc, $(cat "$dir/err")"
ppl -f "$dir/nothere.txt" >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -qE "cannot (read|open)" "$dir/err"' "missing file: rc $rc, $(cat "$dir/err")"
ppl >/dev/null 2>&1; rc=$?
check '[ $rc -ne 0 ]' "no -f is an error"
check '"$GROK" perplexity --help | grep -q "second-half"' "grok perplexity --help"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
