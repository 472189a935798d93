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
#              The remaining difference is f32 vs f64 accumulation (measured ~1e-7
#              relative) plus occasional rounding flips handled below. Without the
#              emulation the difference would be ~1e-2 (Q8_0 activation noise).
# Near-threshold decisions: Q8_0 activation quantization and top-k routing are
# discontinuous. When the float64 value sits within f32 rounding of the threshold (x/d
# within 1e-4 of .5; a block scale d within 1e-3 fp16 ulp of an fp16 rounding midpoint; a
# top-k probability gap < 1e-6), grok.c may round the other way and everything downstream
# moves by ~1e-2. (A sweep of 24 random q8_0 models x 48 tokens needed 0 flips in ~60% of
# runs and 1-2 flips in the rest; all explained.) Such a failure is re-checked with
# `grok_ref.py --explain`, which flips those specific decisions in the reference; it passes
# only if the flipped reference then matches within the same bound everywhere (the flips
# are printed). Seen once: q8_0_gqa4_untied+caps, layer 0 pos 13, x/d = 72.4999847.
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
      "  argmax %d/%d%s" % (label, "ok  " if ok else "DIFF", maxd, pos_max, v_max, scale,
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

# Derived models: the metadata of a `grok new` file rewritten (tensors unchanged) to
# exercise keys `grok new` does not vary. name | base config | python dict of keys to set
# (value types: f = FLOAT32) | keys to drop | n_tokens | eval variants
#  * caps:     strong attention soft-cap (1.0 instead of 30: every score is capped),
#              final logit soft-cap 1.0 (Grok-2 key), rope base 50, eps 1e-3,
#              embedding_scale 3, logit_scale 2 -> each of these keys moves the logits >>1e-4.
#  * defaults: hd=128 model with embedding_scale, logit_scale, attention.output_scale,
#              attn_logit_softcapping and rope.freq_base removed: the documented defaults
#              (78.38367176906169, 0.5773502691896257, 0.08838834764831845, 30, 10000) apply.
DERIVED=(
  "f32_gqa1_tied+caps|f32_gqa1_tied|{'grok.attn_logit_softcapping':'f1.0','grok.final_logit_softcapping':'f1.0','grok.rope.freq_base':'f50','grok.attention.layer_norm_rms_epsilon':'f1e-3','grok.embedding_scale':'f3','grok.logit_scale':'f2'}||24|;--batch 1"
  "q8_0_gqa4_untied+caps|q8_0_gqa4_untied|{'grok.attn_logit_softcapping':'f1.5','grok.final_logit_softcapping':'f2.0','grok.rope.freq_base':'f1e6'}||40|"
  "f32_hd128_gqa2_untied_fused+defaults|f32_hd128_gqa2_untied_fused|{}|grok.embedding_scale,grok.logit_scale,grok.attention.output_scale,grok.attn_logit_softcapping,grok.rope.freq_base|12|"
)

# check_model FILE TYPE NEWARGS: the file `grok new` wrote has what the arguments asked for
# (otherwise the parity check could pass trivially, e.g. if --type were ignored).
check_model() {
  "$PY" - "$1" "$2" "$3" "$SRC/tests/ref" <<'PYEOF'
import sys, math
path, typ, args, refdir = sys.argv[1:5]
sys.path.insert(0, refdir)
from gguf_reader import GGUFReader
r = GGUFReader(path); md = r.metadata; a = args.split()
def arg(n):
    return int(a[a.index(n) + 1])
errs = []
want = {"grok.embedding_length": arg("--embd"), "grok.block_count": arg("--layers"),
        "grok.attention.head_count": arg("--heads"), "grok.attention.head_count_kv": arg("--kv-heads"),
        "grok.feed_forward_length": arg("--ff"), "grok.expert_count": arg("--experts"),
        "grok.expert_used_count": arg("--experts-used")}
for k, v in want.items():
    if md.get(k) != v:
        errs.append("%s = %r, expected %r" % (k, md.get(k), v))
E, H = arg("--embd"), arg("--heads")
hd = E // H
if r.shape("token_embd.weight") != (arg("--vocab"), E):
    errs.append("token_embd shape %s" % (r.shape("token_embd.weight"),))
if hd != 128:
    osc = md.get("grok.attention.output_scale")
    if osc is None or abs(osc - 1 / math.sqrt(hd)) > 1e-6:
        errs.append("grok.attention.output_scale = %r, expected 1/sqrt(%d)" % (osc, hd))
untied, fused = "--untied" in a, "--fused-qkv" in a
if ("output.weight" in r.tensors) != untied:
    errs.append("output.weight %s" % ("missing" if untied else "present without --untied"))
if ("blk.0.attn_qkv.weight" in r.tensors) != fused:
    errs.append("attn_qkv %s" % ("missing" if fused else "present without --fused-qkv"))
big = ["token_embd.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate_exps.weight",
       "blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight"]
big += ["blk.0.attn_qkv.weight"] if fused else ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"]
big += ["output.weight"] if untied else []
for n in big:
    if n in r.tensors and r.type_name(n).lower() != typ:
        errs.append("%s is %s, expected %s" % (n, r.type_name(n), typ))
for n in ["output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_gate_inp.weight"]:
    if n in r.tensors and r.type_name(n) != "F32":
        errs.append("%s is %s, expected F32" % (n, r.type_name(n)))
if errs:
    print("  FAIL: the file written by grok new does not match its arguments:")
    for e in errs:
        print("    " + e)
    sys.exit(1)
PYEOF
}

# run_case NAME TYPE MODEL NTOK VOCAB TOKSEED VARIANTS: reference + grok eval per variant
run_case() {
  local name=$1 type=$2 model=$3 ntok=$4 vocab=$5 tseed=$6 variants=$7 toks v label out
  toks=$(tokens "$ntok" "$vocab" "$tseed")
  if ! "$PY" "$REF" "$model" --tokens "$toks" --out "$TMP/$name.ref.f32" --quiet >"$TMP/$name.ref.log" 2>&1; then
    echo "  FAIL: reference failed:"; sed 's/^/    /' "$TMP/$name.ref.log" | tail -20
    fail=1; return
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
    if ! "$PY" "$TMP/cmp.py" "$out" "$TMP/$name.ref.f32" "$ntok" "$vocab" "${REL[$type]}" "$label"; then
      # A disagreement may come from a discrete decision whose exact (float64) input sits
      # within f32 rounding of its threshold: a Q8_0 activation value x/d within 1e-4 of .5
      # (round-half-away), a Q8_0 block scale at an fp16 rounding midpoint, or two experts'
      # router probabilities within 1e-6 at the top-k boundary. grok.c (f32) may legitimately land on the other side. The reference
      # then flips such decisions one at a time (greedy, at most 8); the disagreement is
      # accepted only if the flipped reference matches grok.c within the SAME bound at
      # every position. A real bug is not explainable this way.
      if "$PY" "$REF" "$model" --tokens "$toks" --explain "$out" --rel "${REL[$type]}" \
           --out "$TMP/$name.ref_explained.f32" 2>&1 | sed 's/^/      /'
         [ "${PIPESTATUS[0]}" -eq 0 ] &&
         "$PY" "$TMP/cmp.py" "$out" "$TMP/$name.ref_explained.f32" "$ntok" "$vocab" "${REL[$type]}" \
           "$label (after flips)"; then
        echo "      -> accepted: the difference is a near-threshold rounding decision, not a bug"
      else
        fail=1
      fi
    fi
  done
}

fail=0
declare -A CTYPE CVOCAB CSEED
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
  check_model "$model" "$type" "$newargs" || { fail=1; continue; }
  vocab=$(sed -n 's/.*--vocab \([0-9]*\).*/\1/p' <<<"$newargs")
  seed=$(sed -n 's/.*--seed \([0-9]*\).*/\1/p' <<<"$newargs")
  CTYPE[$name]=$type; CVOCAB[$name]=$vocab; CSEED[$name]=$seed
  run_case "$name" "$type" "$model" "$ntok" "$vocab" "$((seed * 7 + 1))" "$variants"
done

for d in "${DERIVED[@]}"; do
  IFS='|' read -r name base setk dropk ntok variants <<<"$d"
  [ -f "$TMP/$base.gguf" ] && [ -n "${CTYPE[$base]:-}" ] || { echo "== $name: base $base missing"; fail=1; continue; }
  model="$TMP/$name.gguf"
  echo "== $name: $base with set $setk drop [$dropk], $ntok tokens"
  if ! "$PY" - "$TMP/$base.gguf" "$model" "$setk" "$dropk" "$SRC/tests/ref" <<'PYEOF'
import sys, ast
src, dst, setk, dropk, refdir = sys.argv[1:6]
sys.path.insert(0, refdir)
import gguf_reader as g
sets = {k: (g.T_FLOAT32, float(v[1:])) if v[0] == "f" else (g.T_UINT32, int(v[1:]))
        for k, v in ast.literal_eval(setk).items()}
g.rewrite_metadata(src, dst, sets, [k for k in dropk.split(",") if k])
PYEOF
  then echo "  FAIL: could not rewrite the metadata"; fail=1; continue; fi
  run_case "$name" "${CTYPE[$base]}" "$model" "$ntok" "${CVOCAB[$base]}" "$((CSEED[$base] * 7 + 2))" "$variants"
done

if [ $fail -ne 0 ]; then
  echo "FAIL: grok.c disagrees with the reference (files kept in $TMP)"
  exit 1
fi
echo "PASS: grok.c matches the float64 reference on all configs"
exit 0
