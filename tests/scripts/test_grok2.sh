#!/usr/bin/env bash
# Grok-2: the forward pass against the float64 spec reference (tests/ref/grok2_ref.py,
# written from shared/docs/grok-architecture.md Part B) and against llama.cpp (the peer)
# where llama.cpp implements the same thing; then the Grok-2 tokenizer (byte-level BPE,
# pre-tokenizer "grok-2") against the Python reference of B6 (tests/ref/grok2_tok_ref.py:
# ids, the pre-tokenizer's pieces and decoding, on a multilingual corpus, invalid UTF-8 and
# 300 random strings) and against llama.cpp's tokenizer (valid UTF-8 cases).
#
# Forward checks, on tiny random models from `grok new --grok2` (dense MLP beside the MoE,
# untied output, router cap, final-logit cap, attention temperature, RoPE base 208533496):
#   * every position: argmax identical and max|grok - ref| <= 1e-4 * max|ref|. f32 and bf16
#     weights: grok.c computes in f32 with exactly the file's weights, the reference in
#     float64, so only f32 rounding remains (measured ~5e-7). q8_0: the reference quantizes
#     activations like grok.c (--emulate-q8).
#   * the attention temperature is exercised with temperature lengths of 4 and 8 (so that
#     most positions are past it) and once with the real length 1024 over 1100 positions;
#     the batch-of-1 (decode) path is checked too.
#   * the test is sensitive: the reference without temperature / router cap / final cap
#     differs from grok.c by far more than the bound (printed as "sensitivity").
# llama.cpp (skipped without node or the peer): it skips the router cap and the attention
# temperature and renormalises the top-k gates (gguf-and-llamacpp.md 2.3), so
#   * with router cap 0, all experts used (renormalising is then a no-op) and positions
#     <= the temperature length, grok.c must match it to 2e-3 abs (its fp16 GELU table
#     accounts for ~5e-4);
#   * in every config, grok2_ref.py --llamacpp (those three differences plus the fp16 GELU
#     table) must match llama.cpp to 1e-4 relative: that pins down what llama.cpp computes,
#     and the grok.c-vs-llama.cpp difference that the reference's features cause is printed.
#
# Env (from ctest): GROK, GROK_SRC, GROK_SHARED, GROK_TMP. Needs /usr/bin/python3 + numpy.
set -u

PY=/usr/bin/python3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${GROK_SRC:-$(cd "$HERE/../.." && pwd)}
SHARED=${GROK_SHARED:-$SRC/../shared}
GROK=${GROK:-$SRC/build/grok}
TMP=${GROK_TMP:-${TMPDIR:-/tmp}/grok-testtmp}/grok2
REF="$SRC/tests/ref/grok2_ref.py"

if ! [ -x "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIP: $PY with numpy is not available"; exit 77
fi
if ! [ -x "$GROK" ]; then
  echo "FAIL: grok binary not found at '$GROK'"; exit 1
fi
mkdir -p "$TMP"
fail=0

cat > "$TMP/cmp.py" <<'PYEOF'
# cmp.py GOT REF NVOCAB BOUND LABEL [last]: rows of GOT vs REF (REF may hold one row:
# then only GOT's last row is compared). BOUND: relative to max|REF|, or "abs:X".
# Negative bound = information only (never fails).
import sys, numpy as np
got, ref, nv, bound, label = sys.argv[1:6]
nv = int(nv)
a = np.fromfile(got, dtype="<f4").astype(np.float64)
b = np.fromfile(ref, dtype="<f4").astype(np.float64)
if a.size % nv or b.size % nv or not a.size or not b.size:
    print("  %-40s FAIL: bad sizes %d / %d" % (label, a.size, b.size)); sys.exit(1)
a, b = a.reshape(-1, nv), b.reshape(-1, nv)
if len(sys.argv) > 6 or b.shape[0] == 1:
    a, b = a[-1:], b[-1:]
if a.shape != b.shape:
    print("  %-40s FAIL: %d vs %d rows" % (label, a.shape[0], b.shape[0])); sys.exit(1)
if not np.all(np.isfinite(a)):
    print("  %-40s FAIL: non-finite logits" % label); sys.exit(1)
d = np.abs(a - b); scale = np.abs(b).max(); maxd = d.max()
info = bound.startswith("-")
if bound.startswith("abs:"):
    tol = float(bound[4:]); bs = "abs %.1e" % tol
else:
    tol = abs(float(bound)) * scale; bs = "rel %.1e" % abs(float(bound))
am, bm = a.argmax(axis=1), b.argmax(axis=1)
bad = [p for p in range(a.shape[0]) if am[p] != bm[p]]
ok = info or (maxd <= tol and not bad)
print("  %-40s %s max|d|=%.3e rel=%.3e (max|logit| %.4g, %d rows)%s%s"
      % (label, "info" if info else ("ok  " if ok else "FAIL"), maxd, maxd / scale, scale, a.shape[0],
         "" if info else "  bound " + bs,
         ("  argmax differs at %d rows (first %d)" % (len(bad), bad[0])) if bad else ""))
sys.exit(0 if ok else 1)
PYEOF

tokens() {  # tokens N VOCAB SEED
  "$PY" -c "import random,sys; r=random.Random(int(sys.argv[3])); print(','.join(str(r.randrange(3,int(sys.argv[2]))) for _ in range(int(sys.argv[1]))))" "$1" "$2" "$3"
}

new_model() {  # new_model FILE ARGS...
  local f=$1; shift
  rm -f "$f"
  if ! "$GROK" new "$f" "$@" >"$f.log" 2>&1; then
    echo "  FAIL: grok new $*"; sed 's/^/    /' "$f.log" | tail -5; fail=1; return 1
  fi
}

echo "== forward vs the spec reference (all positions)"
# name | type | grok new args | n tokens | ref flags
CONFIGS=(
  "temp8|f32|--embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 --vocab 320 --temp-len 8 --seed 3|40|"
  "strongcaps|f32|--embd 64 --layers 2 --heads 4 --kv-heads 1 --ff 32 --dense-ff 96 --experts 8 --experts-used 2 --vocab 300 --temp-len 4 --router-cap 1 --final-cap 2 --seed 4|24|"
  "bf16_gqa4|bf16|--embd 128 --layers 2 --heads 8 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 --vocab 300 --temp-len 6 --seed 5|20|"
  "q8_0|q8_0|--embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 --vocab 320 --temp-len 8 --seed 6|24|--emulate-q8"
  "len1100|f32|--embd 32 --layers 1 --heads 2 --kv-heads 1 --ff 32 --experts 2 --experts-used 1 --vocab 300 --seed 7|1100|"
)
for cfg in "${CONFIGS[@]}"; do
  IFS='|' read -r name type args n refflags <<<"$cfg"
  m="$TMP/$name.gguf"
  # shellcheck disable=SC2086
  new_model "$m" --grok2 $args --ctx 2048 --type "$type" || continue
  vocab=$(sed -n 's/.*--vocab \([0-9]*\).*/\1/p' <<<"$args")
  toks=$(tokens "$n" "$vocab" "$n")
  echo " -- $name ($type, $n tokens)"
  # shellcheck disable=SC2086
  if ! "$PY" "$REF" "$m" --tokens "$toks" --out "$TMP/$name.ref.f32" --quiet $refflags >"$TMP/$name.ref.log" 2>&1; then
    echo "  FAIL: reference failed"; tail -5 "$TMP/$name.ref.log"; fail=1; continue
  fi
  for variant in "batch:" "batch1:--batch 1" "threads2:-t 2 --batch 7"; do
    vname=${variant%%:*}; vflags=${variant#*:}
    [ "$name" = len1100 ] && [ "$vname" != batch ] && continue
    # shellcheck disable=SC2086
    if ! "$GROK" eval -m "$m" --tokens "$toks" --logits "$TMP/$name.$vname.f32" -t 1 $vflags \
         >"$TMP/$name.eval.log" 2>&1; then
      echo "  FAIL: grok eval $vflags"; tail -5 "$TMP/$name.eval.log"; fail=1; continue
    fi
    "$PY" "$TMP/cmp.py" "$TMP/$name.$vname.f32" "$TMP/$name.ref.f32" "$vocab" 1e-4 "grok ($vname) vs ref" || fail=1
  done
done

# Sensitivity: the reference with one Grok-2 feature turned off must be far from grok.c.
"$PY" - "$TMP/strongcaps.gguf" "$TMP/strongcaps.batch.f32" "$(tokens 24 300 24)" "$SRC/tests/ref" <<'PYEOF' || fail=1
import copy, sys
import numpy as np
sys.path.insert(0, sys.argv[4])
import grok2_ref as g
from gguf_reader import GGUFReader
r = GGUFReader(sys.argv[1]); cfg = g.config_from_gguf(r); W = g.weights_from_gguf(r)
toks = [int(t) for t in sys.argv[3].split(",")]
got = np.fromfile(sys.argv[2], dtype="<f4").astype(np.float64).reshape(len(toks), -1)
scale = np.abs(got).max(); ok = True
for what, key in (("attention temperature", "temp_len"), ("router cap", "router_cap"), ("final cap", "final_cap")):
    c = copy.copy(cfg); setattr(c, key, 0)
    rel = np.abs(g.forward(c, W, toks) - got).max() / scale
    good = rel > 1e-3   # 10x the parity bound
    ok &= good
    print("  sensitivity: reference without the %-22s differs by rel %.2e %s" % (what, rel, "ok" if good else "FAIL (too small)"))
sys.exit(0 if ok else 1)
PYEOF

if ! "$GROK" info "$TMP/temp8.gguf" --no-tensors >"$TMP/info.txt" 2>&1 ||
   ! grep -q "router cap      on" "$TMP/info.txt" || ! grep -q "attn temperature on, logits \* log2(pos)/log2(8)" "$TMP/info.txt"; then
  echo "  FAIL: grok info does not report the Grok-2 behaviours:"; sed 's/^/    /' "$TMP/info.txt" | tail -12; fail=1
else
  echo "  ok   grok info reports the router cap and the attention temperature"
fi

echo "== forward vs llama.cpp (last position)"
PEER=""
if command -v node >/dev/null 2>&1 && [ -x "$SHARED/peer/setup.sh" ]; then
  PEER=$("$SHARED/peer/setup.sh" 2>/dev/null) || PEER=""
fi
if [ -z "$PEER" ] || ! [ -f "$PEER/run.mjs" ]; then
  echo "  skipped: node or the llama.cpp peer is not available"
else
  # name | args | n tokens | grok-vs-llama bound ("-1" = info only)
  LCONF=(
    "lc_same|--embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 4 --vocab 320 --router-cap 0 --seed 11|24|abs:2e-3"
    "lc_fused_untied|--embd 96 --layers 2 --heads 6 --kv-heads 2 --ff 32 --experts 2 --experts-used 2 --vocab 300 --router-cap 0 --fused-qkv --seed 12|16|abs:2e-3"
    "lc_ref_features|--embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 --vocab 320 --temp-len 8 --seed 13|24|-1"
  )
  for cfg in "${LCONF[@]}"; do
    IFS='|' read -r name args n bound <<<"$cfg"
    m="$TMP/$name.gguf"
    # shellcheck disable=SC2086
    new_model "$m" --grok2 $args --ctx 256 --type f32 || continue
    vocab=$(sed -n 's/.*--vocab \([0-9]*\).*/\1/p' <<<"$args")
    toks=$(tokens "$n" "$vocab" "$((n + 1000))")
    echo " -- $name ($n tokens)"
    if ! node "$PEER/run.mjs" "$m" --tokens "$toks" --kv f32 --threads 1 --dump-logits "$TMP/$name.llama.f32" --quiet \
         >"$TMP/$name.llama.log" 2>&1; then
      echo "  FAIL: llama.cpp could not run the model"; tail -5 "$TMP/$name.llama.log"; fail=1; continue
    fi
    "$GROK" eval -m "$m" --tokens "$toks" --logits "$TMP/$name.grok.f32" -t 1 >/dev/null 2>&1 || { echo "  FAIL: grok eval"; fail=1; continue; }
    "$PY" "$REF" "$m" --tokens "$toks" --out "$TMP/$name.refl.f32" --llamacpp --quiet || { fail=1; continue; }
    "$PY" "$TMP/cmp.py" "$TMP/$name.grok.f32" "$TMP/$name.llama.f32" "$vocab" "$bound" "grok vs llama.cpp" last || fail=1
    "$PY" "$TMP/cmp.py" "$TMP/$name.refl.f32" "$TMP/$name.llama.f32" "$vocab" 1e-4 "ref(--llamacpp) vs llama.cpp" last || fail=1
  done
fi

echo "== Grok-2 tokenizer: synthetic byte-level vocabularies vs tests/ref/grok2_tok_ref.py"
for V in 600 4000; do
  m="$TMP/tok$V.gguf"
  new_model "$m" --grok2 --embd 32 --layers 1 --heads 2 --kv-heads 1 --ff 32 --experts 2 --experts-used 1 --vocab $V || continue
  echo " -- vocabulary of $V (merges trained on a built-in multilingual text)"
  "$PY" "$SRC/tests/ref/grok2_tok_ref.py" check "$GROK" "$m" ${PEER:+--llama "$PEER"} || fail=1
done

if [ $fail -ne 0 ]; then echo "FAIL (files kept in $TMP)"; exit 1; fi
echo "PASS"
exit 0
