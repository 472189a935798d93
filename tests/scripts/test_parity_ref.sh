#!/usr/bin/env bash
# End-to-end parity: grok.c's forward pass vs the independent float64 reference
# (tests/ref/grok_ref.py, written from shared/docs/grok-architecture.md Part A and
# shared/docs/gguf-and-llamacpp.md, not from grok.c's code).
#
# For each tiny config: `grok new` writes a random-weight GGUF, `grok eval` writes the
# logits of every position (once per eval variant: default batch, --batch 1, ...), the
# reference computes the same from the same file, and we check at EVERY position:
#   * argmax identical (a position whose reference top-2 gap is below the tolerance is
#     reported as a near-tie and must pick one of the tied tokens);
#   * max|grok - ref| <= REL * max|ref logit| (over all positions and vocab entries).
#
# Tolerances (REL, relative to the largest |logit| of the config):
#   f32  1e-4  both sides use the same f32 weights; grok.c computes in f32, the reference
#              in float64, so the difference is f32 rounding only (measured ~1e-7..1e-6).
#   f16  1e-4  same argument: F16/BF16 weights dequantize exactly and grok.c multiplies
#   bf16 1e-4  them with f32 activations (no f16/bf16 activation rounding, unlike ggml),
#              so the error is again f32 rounding (measured ~1e-7..1e-6). An engine that
#              rounded activations to f16/bf16 would show ~1e-3 and fail, on purpose.
#   q8_0 1e-4  the reference emulates grok.c's Q8_0 path exactly (activations quantized to
#              Q8_0 per 32-block with ggml's reference rounding, fp16 scales, integer dots).
#              The remaining difference is f32 vs f64 accumulation plus rare
#              round-to-nearest flips of an activation that sits on a .5 boundary; measured
#              ~1e-6. Without the emulation the difference would be ~1e-2 (q8 noise).
# The measured errors are printed per config/variant for the project's notes.
#
# Env (from ctest): GROK (binary), GROK_SRC (checkout), GROK_TMP (scratch dir).
# Needs /usr/bin/python3 with numpy (Debian's); exit 77 (skipped) when it is missing.
set -u

PY=/usr/bin/python3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${GROK_SRC:-$(cd "$HERE/../.." && pwd)}
GROK=${GROK:-$SRC/build/grok}
TMP=${GROK_TMP:-${TMPDIR:-/tmp}/grok-testtmp}/parity_ref
REF="$SRC/tests/ref/grok_ref.py"

if ! [ -x "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIP: $PY with numpy is not available (the reference needs numpy)"
  exit 77
fi
if ! [ -x "$GROK" ]; then
  echo "FAIL: grok binary not found at '$GROK' (set GROK or build with make)"
  exit 1
fi
mkdir -p "$TMP"

# ---------------------------------------------------------------------------
# comparison helper
cat > "$TMP/cmp.py" <<'PYEOF'
import sys, numpy as np
got_path, ref_path, ntok, nvocab, rel, label = sys.argv[1:7]
ntok, nvocab, rel = int(ntok), int(nvocab), float(rel)
ref = np.fromfile(ref_path, dtype="<f4").astype(np.float64)
raw = np.fromfile(got_path, dtype="<f4")
if raw.size != ntok * nvocab:
    print("  %-28s FAIL: logits file has %d floats, expected %d x %d = %d"
          % (label, raw.size, ntok, nvocab, ntok * nvocab))
    sys.exit(1)
got = raw.astype(np.float64).reshape(ntok, nvocab)
ref = ref.reshape(ntok, nvocab)
if not np.all(np.isfinite(got)):
    print("  %-28s FAIL: non-finite logits" % label); sys.exit(1)
d = np.abs(got - ref)
scale = np.max(np.abs(ref))
tol = rel * scale
maxd = d.max()
pos_max, v_max = np.unravel_index(np.argmax(d), d.shape)
per_pos = d.max(axis=1)
ga, ra = got.argmax(axis=1), ref.argmax(axis=1)
bad, ties = [], []
for p in range(ntok):
    if ga[p] == ra[p]:
        continue
    gap = ref[p, ra[p]] - ref[p, ga[p]]
    (ties if gap <= 2 * tol else bad).append((p, int(ra[p]), int(ga[p]), gap))
ok = maxd <= tol and not bad
print("  %-28s %s max|dlogit|=%.3e (pos %d, tok %d)  max|logit|=%.4g  rel=%.3e  bound rel %.0e"
      "  argmax %d/%d%s" % (label, "ok  " if ok else "FAIL", maxd, pos_max, v_max, scale,
                            maxd / scale, rel, ntok - len(bad) - len(ties), ntok,
                            (" (+%d near-ties)" % len(ties)) if ties else ""))
if maxd > tol:
    worst = np.argsort(-per_pos)[:5]
    print("      worst positions: " + ", ".join("pos %d: %.3e" % (p, per_pos[p]) for p in worst))
    first = int(np.argmax(per_pos > tol))
    print("      first position over the bound: %d (max|d| %.3e); per-position max|d|: %s"
          % (first, per_pos[first], " ".join("%.1e" % x for x in per_pos)))
for p, r, g, gap in bad:
    print("      argmax mismatch at pos %d: ref %d, grok %d (ref gap %.3e)" % (p, r, g, gap))
for p, r, g, gap in ties:
    print("      near-tie at pos %d: ref %d, grok %d (ref gap %.3e <= 2*tol)" % (p, r, g, gap))
sys.exit(0 if ok else 1)
PYEOF

tokens() {  # tokens N VOCAB SEED -> comma list of ids in [1, VOCAB)
  "$PY" -c "import random,sys; r=random.Random(int(sys.argv[3])); print(','.join(str(r.randrange(1,int(sys.argv[2]))) for _ in range(int(sys.argv[1]))))" "$1" "$2" "$3"
}

# ---------------------------------------------------------------------------
# configs: name | type | `grok new` args | n_tokens | eval variants (';'-separated extra args)
# Together they vary: GQA ratio 1,3,4,2; experts 4 and 8 (top-2); tied/untied output;
# fused/separate qkv; f32/f16/bf16/q8_0; head_dim 16/32/64/128 (so output_scale matters).
CONFIGS=(
  "f32_gqa1_tied|f32|--embd 64 --layers 2 --heads 4 --kv-heads 4 --ff 96 --experts 4 --experts-used 2 --ctx 64 --vocab 320 --seed 11|24|;--batch 1;--batch 5 -t 2"
  "f16_gqa3_untied_fused|f16|--embd 96 --layers 2 --heads 6 --kv-heads 2 --ff 64 --experts 8 --experts-used 2 --ctx 64 --vocab 384 --seed 12 --untied --fused-qkv|32|;--batch 1"
  "bf16_gqa4_tied_fused|bf16|--embd 128 --layers 3 --heads 4 --kv-heads 1 --ff 128 --experts 4 --experts-used 2 --ctx 64 --vocab 300 --seed 13 --fused-qkv|16|"
  "q8_0_gqa4_untied|q8_0|--embd 128 --layers 2 --heads 8 --kv-heads 2 --ff 96 --experts 8 --experts-used 2 --ctx 64 --vocab 512 --seed 14 --untied|40|;--batch 1;--batch 7 -t 2"
  "q8_0_gqa1_tied_fused|q8_0|--embd 64 --layers 2 --heads 2 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 --ctx 64 --vocab 448 --seed 15 --fused-qkv|20|"
  "f32_hd128_gqa2_untied_fused|f32|--embd 256 --layers 2 --heads 2 --kv-heads 1 --ff 64 --experts 8 --experts-used 2 --ctx 64 --vocab 320 --seed 16 --untied --fused-qkv|12|;--batch 1"
)

declare -A REL=([f32]=1e-4 [f16]=1e-4 [bf16]=1e-4 [q8_0]=1e-4)

fail=0
for cfg in "${CONFIGS[@]}"; do
  IFS='|' read -r name type newargs ntok variants <<<"$cfg"
  model="$TMP/$name.gguf"
  rm -f "$model"
  echo "== $name: type $type, $newargs, $ntok tokens"
  # shellcheck disable=SC2086
  if ! "$GROK" new "$model" $newargs --type "$type" >"$TMP/$name.new.log" 2>&1; then
    echo "  FAIL: grok new failed:"; sed 's/^/    /' "$TMP/$name.new.log" | tail -20
    fail=1; continue
  fi
  vocab=$(sed -n 's/.*--vocab \([0-9]*\).*/\1/p' <<<"$newargs")
  seed=$(sed -n 's/.*--seed \([0-9]*\).*/\1/p' <<<"$newargs")
  toks=$(tokens "$ntok" "$vocab" "$((seed * 7 + 1))")
  if ! "$PY" "$REF" "$model" --tokens "$toks" --out "$TMP/$name.ref.f32" --quiet >"$TMP/$name.ref.log" 2>&1; then
    echo "  FAIL: reference failed:"; sed 's/^/    /' "$TMP/$name.ref.log" | tail -20
    fail=1; continue
  fi
  IFS=';' read -r -a vars <<<"$variants"
  [ ${#vars[@]} -eq 0 ] && vars=("")
  for v in "${vars[@]}"; do
    label="eval ${v:-(default batch)}"
    out="$TMP/$name.grok$(tr -c 'a-z0-9' '_' <<<"$v").f32"
    rm -f "$out"
    # shellcheck disable=SC2086
    if ! "$GROK" eval -m "$model" --tokens "$toks" --logits "$out" $v >"$TMP/$name.eval.log" 2>&1; then
      echo "  $label FAIL: grok eval failed:"; sed 's/^/    /' "$TMP/$name.eval.log" | tail -20
      fail=1; continue
    fi
    "$PY" "$TMP/cmp.py" "$out" "$TMP/$name.ref.f32" "$ntok" "$vocab" "${REL[$type]}" "$label" || fail=1
  done
done

if [ $fail -ne 0 ]; then
  echo "FAIL: grok.c disagrees with the reference (files kept in $TMP)"
  exit 1
fi
echo "PASS: grok.c matches the float64 reference on all configs"
exit 0
