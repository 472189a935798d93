#!/usr/bin/env bash
# grok convert on synthetic checkpoints written in the official layouts:
#   * Grok-1 JAX release (tests/ref/make_grok1_ckpt.py): 2 + 12 x 12 pickle files (protocol 4,
#     __main__.QuantizedWeight8bit with int8 weights and bf16 scales, 8-block scales for the
#     row-parallel matrices), 12 layers so that the files are in the lexicographic layer order
#     0 1 10 11 2 .. 9; a few scales without an exact fp16 value (--tiny-scales);
#   * Grok-2 Hugging Face release (tests/ref/make_hf_ckpt.py): config.json, TP-common
#     safetensors, the experts cut in 8 tensor-parallel rank files, tokenizer.tok.json;
#   * a Grok-1 Hugging Face port with keyfan/grok-1-hf's names (make_hf_ckpt.py --keyfan).
# Checks:
#   * logits of the converted GGUF (grok eval, every position) against tests/ref/ckpt_ref.py,
#     which reads the checkpoint itself (Python pickle / its own safetensors reader) and runs
#     the float64 spec forward pass: f32 and bf16 output <= 1e-4 relative, argmax identical
#     (measured ~1e-7: the same weights, f32 vs float64 arithmetic);
#   * q8_0 output: every tensor equal to what the reference expects (int8 carried over
#     exactly where the scales allow, else bf16(w8 x s) quantized); logits <= 5e-2 relative:
#     Q8_0 activation quantization is discontinuous, and f32 summation-order differences
#     between kernels (e.g. AVX-512 vs scalar) flip single roundings that move logits by
#     ~1e-2 (the same bound as test_parity_llamacpp's q8_0 one);
#   * the Grok-2 tokenizer made from tokenizer.tok.json against tiktoken's rule (ranks of
#     the concatenations) and the merges rule, in tests/ref/grok2_tok_ref.py, and against
#     llama.cpp's tokenizer on the converted file;
#   * llama.cpp (when the peer is available) loads the converted files; its logits match the
#     reference modelling llama.cpp (Grok-2) or grok.c (Grok-1, abs 2e-3);
#   * errors: missing / extra / wrong-size file, unknown pickle opcode, truncated pickle,
#     a missing tensor-parallel shard, and a full disk (ulimit -f): a clear message and no
#     OUT.gguf or OUT.gguf.tmp left behind;
#   * a mix (--type Q4_K_M) goes through grok quantize and leaves no temporary file.
# Env (from ctest): GROK, GROK_SRC, GROK_SHARED, GROK_TMP. Needs /usr/bin/python3 + numpy.
set -u

PY=/usr/bin/python3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=${GROK_SRC:-$(cd "$HERE/../.." && pwd)}
SHARED=${GROK_SHARED:-$SRC/../shared}
GROK=${GROK:-$SRC/build/grok}
TMP=${GROK_TMP:-${TMPDIR:-/tmp}/grok-testtmp}/convert
REFDIR="$SRC/tests/ref"
TOKMODEL="$SHARED/models/grok-1/tokenizer.model"

if ! [ -x "$PY" ] || ! "$PY" -c 'import numpy' 2>/dev/null; then
  echo "SKIP: $PY with numpy is not available"; exit 77
fi
if ! [ -f "$TOKMODEL" ]; then
  echo "SKIP: the Grok-1 tokenizer.model is not at $TOKMODEL"; exit 77
fi
if ! [ -x "$GROK" ]; then echo "FAIL: grok binary not found at '$GROK'"; exit 1; fi
rm -rf "$TMP"; mkdir -p "$TMP"
fail=0
PEER=""
if command -v node >/dev/null 2>&1 && [ -x "$SHARED/peer/setup.sh" ]; then PEER=$("$SHARED/peer/setup.sh" 2>/dev/null) || PEER=""; fi
[ -n "$PEER" ] && ! [ -f "$PEER/run.mjs" ] && PEER=""

cat > "$TMP/cmp.py" <<'PYEOF'
import sys, numpy as np
got, ref, n, bound, label = sys.argv[1:6]
n, bound = int(n), float(bound)
a = np.fromfile(got, dtype="<f4").astype(np.float64)
b = np.fromfile(ref, dtype="<f4").astype(np.float64)
if a.size != b.size or a.size % n:
    print("  %-36s FAIL: %d vs %d floats" % (label, a.size, b.size)); sys.exit(1)
a, b = a.reshape(n, -1), b.reshape(n, -1)
d = np.abs(a - b); scale = np.abs(b).max(); rel = d.max() / scale
bad = [p for p in range(n) if a[p].argmax() != b[p].argmax()
       and b[p].max() - b[p][a[p].argmax()] > 2 * bound * scale]
ok = rel <= bound and not bad and np.all(np.isfinite(a))
print("  %-36s %s max|d| %.3e rel %.3e (bound %.0e, %d positions)%s" % (label, "ok  " if ok else "FAIL", d.max(),
      rel, bound, n, "  argmax differs at %s" % bad if bad else ""))
sys.exit(0 if ok else 1)
PYEOF

tokens() { "$PY" -c "import random,sys; r=random.Random(int(sys.argv[3])); print(','.join(str(r.randrange(int(sys.argv[1]),int(sys.argv[2]))) for _ in range(int(sys.argv[4]))))" "$@"; }

conv() {  # conv LABEL ARGS... : grok convert, must succeed
  local label=$1; shift
  if ! "$GROK" convert "$@" -t 2 >"$TMP/conv.log" 2>&1; then
    echo "  FAIL: grok convert $label"; tail -5 "$TMP/conv.log" | sed 's/^/    /'; fail=1; return 1
  fi
}

must_fail() {  # must_fail LABEL EXPECTED_MESSAGE OUT ARGS... : grok convert must fail cleanly
  local label=$1 want=$2 out=$3; shift 3
  rm -f "$out" "$out.tmp"
  "$GROK" convert "$@" --quiet -t 1 >"$TMP/err.log" 2>&1; local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$want" "$TMP/err.log" && ! [ -e "$out" ] && ! [ -e "$out.tmp" ]; then
    echo "  ok   $label: $(tail -1 "$TMP/err.log" | cut -c1-150)"
  else
    echo "  FAIL $label (rc $rc, want '$want', out exists: $([ -e "$out" ] || [ -e "$out.tmp" ] && echo yes || echo no)):"
    sed 's/^/    /' "$TMP/err.log" | tail -3; fail=1
  fi
}

echo "== Grok-1 JAX checkpoint (12 layers: lexicographic file order)"
CK="$TMP/grok1-ckpt"
"$PY" "$REFDIR/make_grok1_ckpt.py" "$CK" --tiny-scales >/dev/null || { echo "FAIL: make_grok1_ckpt"; exit 1; }
T1=$(tokens 100 131072 5 12)
for type in f32 bf16 q8_0; do
  out="$TMP/g1.$type.gguf"
  conv "grok1-ckpt --type $type" grok1-ckpt "$CK" "$out" --type "$type" --head-dim 16 --tokenizer "$TOKMODEL" || continue
  "$GROK" eval -m "$out" --tokens "$T1" --logits "$TMP/g1.$type.grok.f32" -t 2 >/dev/null 2>&1 || { echo "  FAIL: eval"; fail=1; continue; }
  "$PY" "$REFDIR/ckpt_ref.py" grok1 "$CK" --tokens "$T1" --out "$TMP/g1.$type.ref.f32" --as "$type" --head-dim 16 >/dev/null ||
    { echo "  FAIL: ckpt_ref"; fail=1; continue; }
  bound=1e-4; [ "$type" = q8_0 ] && bound=5e-2
  "$PY" "$TMP/cmp.py" "$TMP/g1.$type.grok.f32" "$TMP/g1.$type.ref.f32" 12 $bound "$type: grok vs checkpoint reference" || fail=1
done
if [ -f "$TMP/g1.q8_0.gguf" ]; then
  "$PY" - "$TMP/g1.q8_0.gguf" "$CK" "$REFDIR" <<'PYEOF' || fail=1
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np, ckpt_ref
from gguf_reader import GGUFReader
r = GGUFReader(sys.argv[1]); cfg, W = ckpt_ref.load_grok1(sys.argv[2], 16, "q8_0")
bad = [n for n in r.tensor_order if r.array(n).shape != W[n].shape or np.any(r.array(n) != W[n])]
desc = r.metadata["general.description"]
ok = not bad and "772 rows re-quantized" in desc and len(r.tensor_order) == 2 + 12 * 12
print("  %s q8_0: %d tensors equal to the expected values (int8 carried over / re-quantized rows)%s"
      % ("ok  " if ok else "FAIL", len(r.tensor_order) - len(bad), (": differ " + ", ".join(bad[:5])) if bad else ""))
if "772 rows re-quantized" not in desc:
    print("    description: " + desc)
sys.exit(0 if ok else 1)
PYEOF
fi

echo "== Grok-1 checkpoint errors"
bad="$TMP/bad"
mkcopy() { rm -rf "$bad"; mkdir -p "$bad"; for f in "$CK"/tensor*; do ln "$f" "$bad/" 2>/dev/null || cp "$f" "$bad/"; done; }
mkcopy; rm "$bad/tensor00050_000"
must_fail "missing file" "missing file tensor00050_000" "$TMP/e.gguf" grok1-ckpt "$bad" "$TMP/e.gguf" --head-dim 16 --tokenizer "$TOKMODEL"
mkcopy; cp "$CK/tensor00001_000" "$bad/tensor00146_000"
must_fail "extra file" "extra file" "$TMP/e.gguf" grok1-ckpt "$bad" "$TMP/e.gguf" --head-dim 16 --tokenizer "$TOKMODEL"
# file 21 = layer 1 (the second block in string order) rms_norm: 64 floats
mkcopy; rm "$bad/tensor00021_000"; "$PY" -c "import pickle,numpy as np; pickle.dump(np.zeros(65, np.float32), open('$bad/tensor00021_000','wb'), protocol=4)"
must_fail "wrong size" "260 bytes of data, expected 256" "$TMP/e.gguf" grok1-ckpt "$bad" "$TMP/e.gguf" --head-dim 16 --tokenizer "$TOKMODEL"
mkcopy; rm "$bad/tensor00009_000"; "$PY" -c "d=bytearray(open('$CK/tensor00009_000','rb').read()); d[2]=0xff; open('$bad/tensor00009_000','wb').write(d)"
must_fail "unknown opcode" "unknown pickle opcode 0xff at offset 2" "$TMP/e.gguf" grok1-ckpt "$bad" "$TMP/e.gguf" --head-dim 16 --tokenizer "$TOKMODEL"
mkcopy; rm "$bad/tensor00020_000"; head -c 1000 "$CK/tensor00020_000" > "$bad/tensor00020_000"
must_fail "truncated pickle" "truncated" "$TMP/e.gguf" grok1-ckpt "$bad" "$TMP/e.gguf" --head-dim 16 --tokenizer "$TOKMODEL"
must_fail "no tokenizer" "no tokenizer.model" "$TMP/e.gguf" grok1-ckpt "$CK" "$TMP/e.gguf" --head-dim 16
must_fail "wrong head dim" "head dim 48" "$TMP/e.gguf" grok1-ckpt "$CK" "$TMP/e.gguf" --head-dim 48 --tokenizer "$TOKMODEL"
# disk full: a file size limit makes the writes fail (EFBIG) like a full disk would (ENOSPC)
( ulimit -f 2048; trap '' XFSZ
  must_fail "disk full (ulimit -f 1 MiB)" "write failed" "$TMP/full.gguf" grok1-ckpt "$CK" "$TMP/full.gguf" --type f32 --head-dim 16 --tokenizer "$TOKMODEL"
  exit $fail ) || fail=1
rm -rf "$bad"

echo "== Grok-2 Hugging Face checkpoint (experts in 8 tensor-parallel shards)"
HF="$TMP/grok2-hf"
"$PY" "$REFDIR/make_hf_ckpt.py" "$HF" >/dev/null || { echo "FAIL: make_hf_ckpt"; exit 1; }
T2=$(tokens 4 600 7 20)
for type in f32 bf16 q8_0; do
  out="$TMP/g2.$type.gguf"
  conv "hf --type $type" hf "$HF" "$out" --type "$type" || continue
  "$GROK" eval -m "$out" --tokens "$T2" --logits "$TMP/g2.$type.grok.f32" -t 2 >/dev/null 2>&1 || { echo "  FAIL: eval"; fail=1; continue; }
  "$PY" "$REFDIR/ckpt_ref.py" hf "$HF" --tokens "$T2" --out "$TMP/g2.$type.ref.f32" --as "$type" >/dev/null ||
    { echo "  FAIL: ckpt_ref"; fail=1; continue; }
  bound=1e-4; [ "$type" = q8_0 ] && bound=5e-2
  "$PY" "$TMP/cmp.py" "$TMP/g2.$type.grok.f32" "$TMP/g2.$type.ref.f32" 20 $bound "$type: grok vs checkpoint reference" || fail=1
done
echo " -- tokenizer from tokenizer.tok.json"
"$PY" "$REFDIR/grok2_tok_ref.py" check "$GROK" "$TMP/g2.f32.gguf" --tok-json "$HF/tokenizer.tok.json" ${PEER:+--llama "$PEER"} || fail=1
mkdir -p "$TMP/hfbad"; for f in "$HF"/*; do ln "$f" "$TMP/hfbad/" 2>/dev/null || cp "$f" "$TMP/hfbad/"; done
rm "$TMP/hfbad/pytorch_model-00006-TP-003.safetensors"
must_fail "missing TP shard" "rank 3 is missing" "$TMP/e2.gguf" hf "$TMP/hfbad" "$TMP/e2.gguf"
rm -rf "$TMP/hfbad"
echo " -- a mix: --type Q4_K_M (bf16 file, then grok quantize)"
if "$GROK" convert hf "$HF" "$TMP/g2.q4km.gguf" --type Q4_K_M --quiet -t 2 >"$TMP/mix.log" 2>&1 &&
   "$GROK" eval -m "$TMP/g2.q4km.gguf" --tokens "$T2" --logits "$TMP/g2.q4km.f32" >/dev/null 2>&1 &&
   ! ls "$TMP"/g2.q4km.gguf.*tmp* >/dev/null 2>&1; then
  "$PY" "$TMP/cmp.py" "$TMP/g2.q4km.f32" "$TMP/g2.f32.ref.f32" 20 1 "(info) Q4_K_M vs f32 reference" | sed 's/ ok   / info /'
else
  echo "  FAIL: Q4_K_M conversion"; tail -5 "$TMP/mix.log" | sed 's/^/    /'; fail=1
fi

echo "== Grok-1 Hugging Face port (keyfan/grok-1-hf names, tokenizer.model)"
KF="$TMP/keyfan"
"$PY" "$REFDIR/make_hf_ckpt.py" "$KF" --keyfan "$TOKMODEL" --layers 3 >/dev/null || { echo "FAIL: make_hf_ckpt --keyfan"; exit 1; }
if conv "hf (keyfan) --type f32" hf "$KF" "$TMP/kf.gguf" --type f32 &&
   "$GROK" eval -m "$TMP/kf.gguf" --tokens "$T1" --logits "$TMP/kf.grok.f32" -t 2 >/dev/null 2>&1 &&
   "$PY" "$REFDIR/ckpt_ref.py" hf "$KF" --tokens "$T1" --out "$TMP/kf.ref.f32" >/dev/null; then
  "$PY" "$TMP/cmp.py" "$TMP/kf.grok.f32" "$TMP/kf.ref.f32" 12 1e-4 "f32: grok vs checkpoint reference" || fail=1
else
  echo "  FAIL: keyfan conversion or reference"; fail=1
fi

echo "== llama.cpp loads the converted files"
if [ -z "$PEER" ]; then
  echo "  skipped: node or the llama.cpp peer is not available"
else
  T3=$(tokens 4 600 9 8)   # <= the temperature length (8): llama.cpp has no temperature
  if node "$PEER/run.mjs" "$TMP/g2.f32.gguf" --tokens "$T3" --kv f32 --threads 1 --dump-logits "$TMP/g2.llama.f32" --quiet >/dev/null 2>&1 &&
     "$PY" "$REFDIR/grok2_ref.py" "$TMP/g2.f32.gguf" --tokens "$T3" --out "$TMP/g2.refl.f32" --llamacpp --quiet; then
    "$PY" - "$TMP/g2.refl.f32" "$TMP/g2.llama.f32" <<'PYEOF' || fail=1
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype="<f4").astype(np.float64).reshape(8, -1)[-1]
b = np.fromfile(sys.argv[2], dtype="<f4").astype(np.float64)
rel = np.abs(a - b).max() / np.abs(b).max()
print("  %s Grok-2 (hf, f32): llama.cpp vs grok2_ref --llamacpp rel %.3e (bound 1e-4)" % ("ok  " if rel <= 1e-4 else "FAIL", rel))
sys.exit(0 if rel <= 1e-4 else 1)
PYEOF
  else
    echo "  FAIL: llama.cpp could not run the converted Grok-2 file"; fail=1
  fi
  if node "$PEER/run.mjs" "$TMP/g1.f32.gguf" --tokens "$T1" --kv f32 --threads 1 --dump-logits "$TMP/g1.llama.f32" --quiet >/dev/null 2>&1; then
    "$PY" - "$TMP/g1.f32.grok.f32" "$TMP/g1.llama.f32" <<'PYEOF' || fail=1
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype="<f4").astype(np.float64).reshape(12, -1)[-1]
b = np.fromfile(sys.argv[2], dtype="<f4").astype(np.float64)
d = np.abs(a - b).max(); ok = d <= 2e-3 and a.argmax() == b.argmax()
print("  %s Grok-1 (ckpt, f32): grok vs llama.cpp max|d| %.3e (bound abs 2e-3), argmax %d / %d" % ("ok  " if ok else "FAIL", d, a.argmax(), b.argmax()))
sys.exit(0 if ok else 1)
PYEOF
  else
    echo "  FAIL: llama.cpp could not run the converted Grok-1 file"; fail=1
  fi
fi

if [ $fail -ne 0 ]; then echo "FAIL (files kept in $TMP)"; exit 1; fi
rm -rf "$CK" "$HF" "$KF"
echo "PASS"
exit 0
