#!/usr/bin/env bash
# test_mpi.sh - one model across MPI ranks on this machine (mpirun on
# localhost, --oversubscribe):
#   1. parity with one process for 2 and 3 ranks, --split experts and
#      layers, on small f32 and q8_0 models, Grok-1 and Grok-2 layouts: the
#      logits of every position within 1e-5 of the row's largest (f32;
#      q8_0 1e-4), the same greedy and sampled text; chat and perplexity;
#      the experts split's attention cut by heads (2 key/value heads over 2
#      ranks, 3 over 2 and 3 ranks; replicated with 2 over 3 ranks) with
#      quantized KV caches, and context shifts
#   2. memory: each rank's resident memory against its share of the weights
#   3. start-up errors: more ranks than slices, a missing or different file
#      on one rank, different options, a command that runs in one process
#   4. faults: a rank killed mid-generation ends the job with an error
#      within 10 s; a rank that stops answering, within --dist-timeout
#   5. grok serve under mpirun with --parallel slots and the openai client;
#      a rank killed while streaming: an error event, the job ends
#   6. the prompt cache under mpirun (KV read / write on every rank), both splits;
#      a slot saved under mpirun (heads cut over the ranks) restores in one
#      process and the other way round (the same file format)
#   7. the layers split's pipeline (a batch cut into pieces that the ranks
#      run at once): bit-identical logits for a prompt cut into many pieces
#      (--micro-batch and the automatic size), 2 and 3 ranks; a server with
#      --parallel slots whose batches of several sequences are cut, against
#      one process; a rank killed or stopped mid-pipeline ends the job within
#      10 s with an error
#   8. batches in flight (forward_submit): a server's slots decode in one
#      group per rank, texts (greedy and seeded) equal to one process's, 2
#      and 3 ranks; grok bench --parallel keeps its groups in flight; a
#      rank killed while three groups are in flight ends the job in 10 s
# Exit 77 if mpirun is absent or grok was built without MPI. Every mpirun
# runs under `timeout`, so nothing here can hang.
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}" "${GROK_SRC:?}"
command -v mpirun >/dev/null || { echo "SKIP: mpirun not found"; exit 77; }
"$GROK" --version | grep -q MPI || { echo "SKIP: grok was built without MPI"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is needed to compare logits"; exit 77; }
dir="$GROK_TMP/mpi"; rm -rf "$dir"; mkdir -p "$dir"
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0 # Open MPI's own allocations at exit
# CI containers: without ssh/rsh mpirun refuses to start even on localhost unless
# told that every rank is local; without ptrace rights its single-copy transfers fail
command -v ssh >/dev/null || command -v rsh >/dev/null || export OMPI_MCA_plm=isolated
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
# mpi N ARGS...: grok under mpirun with N ranks, at most 60 s
mpi() { local n=$1; shift; timeout -k 5 60 "${MPIRUN[@]}" -np "$n" "$GROK" "$@"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# rows of n_vocab floats: the largest |a - b| of a row over its largest |a|
cat >"$dir/cmp.py" <<'EOF'
import array, sys
def load(p):
    a = array.array('f'); a.frombytes(open(p, 'rb').read()); return a
a, b, V, tol = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if len(a) != len(b) or len(a) == 0 or len(a) % V: sys.exit("sizes %d and %d" % (len(a), len(b)))
worst = 0.0
for r in range(len(a) // V):
    ra, rb = a[r * V:(r + 1) * V], b[r * V:(r + 1) * V]
    worst = max(worst, max(abs(x - y) for x, y in zip(ra, rb)) / max(abs(x) for x in ra))
print("%.3g" % worst)
sys.exit(0 if worst <= tol else 1)
EOF

shape=(--embd 64 --layers 3 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 --vocab 512 --ctx 256)
"$GROK" new "$dir/g1.gguf" "${shape[@]}" --seed 5 >/dev/null &&
  "$GROK" new "$dir/g1q.gguf" "${shape[@]}" --seed 5 --type q8_0 >/dev/null &&
  "$GROK" new "$dir/g2.gguf" "${shape[@]}" --seed 6 --grok2 >/dev/null &&
  "$GROK" new "$dir/g2q.gguf" "${shape[@]}" --seed 6 --grok2 --type q8_0 >/dev/null || { echo "cannot create models"; exit 1; }
toks=$(seq -s, 3 2 61) # 30 tokens, in chunks of 8: the prompt path and its remainder
V=512

echo "== parity"
for m in g1 g1q g2 g2q; do
  tol=1e-5; case $m in *q) tol=1e-4 ;; esac
  "$GROK" eval -m "$dir/$m.gguf" --tokens "$toks" --batch 8 --logits "$dir/$m.1.f32" -t 1 2>/dev/null || bad "$m: eval in one process"
  want=$("$GROK" run -m "$dir/$m.gguf" -p "Once upon a time" -n 12 --seed 7 --temp 0.9 -t 1 --no-stats 2>/dev/null)
  for n in 2 3; do
    for split in experts layers; do
      mpi "$n" eval -m "$dir/$m.gguf" --tokens "$toks" --batch 8 --logits "$dir/$m.$n.$split.f32" -t 1 --split "$split" \
        >/dev/null 2>"$dir/err" || { bad "$m $n ranks $split: eval failed: $(tail -3 "$dir/err")"; continue; }
      d=$(python3 "$dir/cmp.py" "$dir/$m.1.f32" "$dir/$m.$n.$split.f32" $V $tol); rc=$?
      check '[ $rc -eq 0 ]' "$m $n ranks $split: logits differ by $d (tolerance $tol)"
      [ "$n" = 2 ] || continue # (3 ranks: greedy text below; the logits above)
      got=$(mpi "$n" run -m "$dir/$m.gguf" -p "Once upon a time" -n 12 --seed 7 --temp 0.9 -t 1 --no-stats --split "$split" 2>/dev/null)
      check '[ -n "$want" ] && [ "$got" = "$want" ]' "$m $n ranks $split: sampled text '$got' vs '$want'"
    done
  done
done
g1=$("$GROK" run -m "$dir/g1.gguf" -p "Once upon a time" -n 16 --temp 0 --ignore-eos -t 1 --no-stats 2>/dev/null)
for split in experts layers; do
  g=$(mpi 3 run -m "$dir/g1.gguf" -p "Once upon a time" -n 16 --temp 0 --ignore-eos -t 1 --no-stats --split $split 2>/dev/null)
  check '[ -n "$g1" ] && [ "$g" = "$g1" ]' "greedy text, 3 ranks, $split"
done
# chat (turns from stdin, the cache kept across them) and perplexity
chat1=$(printf 'hello there\nhow are you\n' | "$GROK" chat -m "$dir/g1.gguf" --temp 0 -n 12 -t 1 2>/dev/null)
seq 1 300 | tr '\n' ' ' >"$dir/ppl.txt"
ppl1=$("$GROK" perplexity -m "$dir/g1.gguf" -f "$dir/ppl.txt" -t 1 --ctx 64 2>/dev/null)
for split in experts layers; do
  c=$(printf 'hello there\nhow are you\n' | mpi 2 chat -m "$dir/g1.gguf" --temp 0 -n 12 -t 1 --split $split 2>/dev/null)
  check '[ -n "$chat1" ] && [ "$c" = "$chat1" ]' "chat, 2 ranks, $split: '$c' vs '$chat1'"
  p=$(mpi 3 perplexity -m "$dir/g1.gguf" -f "$dir/ppl.txt" -t 1 --ctx 64 --split $split 2>/dev/null)
  check "awk -v a='${ppl1#perplexity: }' -v b='${p#perplexity: }' 'BEGIN { exit !(a > 0 && (a - b) ^ 2 < 1e-6 * a * a) }'" \
    "perplexity, 3 ranks, $split: '$p' vs '$ppl1'"
done
echo "== experts split: attention cut by heads"
# 3 key/value heads of 32 values (quantized caches need blocks of 32): over
# 2 ranks 1 + 2, over 3 ranks 1 each; g1's 2 over 3 ranks: replicated
h3=(--embd 192 --layers 2 --heads 6 --kv-heads 3 --ff 128 --experts 4 --experts-used 2 --vocab 512 --ctx 256 --seed 8)
"$GROK" new "$dir/h3.gguf" "${h3[@]}" >/dev/null && "$GROK" new "$dir/h3q.gguf" "${h3[@]}" --type q8_0 >/dev/null &&
  "$GROK" new "$dir/h3f.gguf" "${h3[@]}" --fused-qkv >/dev/null ||
  { echo "cannot create models"; exit 1; }
mpi 2 run -m "$dir/h3.gguf" -p hi -n 1 -t 1 >/dev/null 2>"$dir/err"
check 'grep -q "rank 0 (.*): .*key/value heads 0..0 of 3" "$dir/err" && grep -q "rank 1 (.*): .*key/value heads 1..2 of 3" "$dir/err"' \
  "heads 1 + 2 over 2 ranks: $(cat "$dir/err")"
mpi 3 run -m "$dir/g1.gguf" -p hi -n 1 -t 1 >/dev/null 2>"$dir/err"
check 'grep -q "rank 2 (.*): .*attention replicated" "$dir/err"' "2 key/value heads over 3 ranks: replicated: $(cat "$dir/err")"
for m in h3 h3f h3q; do # (h3f: one fused qkv weight)
  tol=1e-5; case $m in *q) tol=1e-4 ;; esac
  for kv in "f32 f32" "q8_0 q4_0" "f16 q8_0"; do
    set -- $kv
    [ $m != h3q ] && [ "$1" != f32 ] && continue
    "$GROK" eval -m "$dir/$m.gguf" --tokens "$toks" --batch 8 --logits "$dir/h.1.f32" -t 1 --kv-k $1 --kv-v $2 2>/dev/null ||
      bad "$m: eval in one process"
    for n in 2 3; do
      mpi "$n" eval -m "$dir/$m.gguf" --tokens "$toks" --batch 8 --logits "$dir/h.$n.f32" -t 1 --kv-k $1 --kv-v $2 \
        >/dev/null 2>"$dir/err" || { bad "$m $n ranks, KV $kv: eval failed: $(tail -3 "$dir/err")"; continue; }
      d=$(python3 "$dir/cmp.py" "$dir/h.1.f32" "$dir/h.$n.f32" $V $tol); rc=$?
      check '[ $rc -eq 0 ]' "$m $n ranks, heads cut, KV $kv: logits differ by $d (tolerance $tol)"
    done
  done
done
want=$("$GROK" run -m "$dir/h3q.gguf" -p "Once upon a time" -n 12 --seed 7 --temp 0.9 -t 1 --no-stats --kv q8_0 2>/dev/null)
got=$(mpi 2 run -m "$dir/h3q.gguf" -p "Once upon a time" -n 12 --seed 7 --temp 0.9 -t 1 --no-stats --kv q8_0 2>/dev/null)
check '[ -n "$want" ] && [ "$got" = "$want" ]' "heads 1 + 2, KV q8_0: sampled text '$got' vs '$want'"
# a reply that fills the context goes on after context shifts (every rank
# re-rotates its heads' keys)
cs1=$(printf 'Tell a long story.\nAnother one.\n' | "$GROK" chat -m "$dir/h3q.gguf" --temp 0 -n 150 --ctx 128 -t 1 --kv q8_0 2>/dev/null)
cs=$(printf 'Tell a long story.\nAnother one.\n' | mpi 2 chat -m "$dir/h3q.gguf" --temp 0 -n 150 --ctx 128 -t 1 --kv q8_0 2>"$dir/err")
check '[ -n "$cs1" ] && [ "$cs" = "$cs1" ] && grep -q "context shift" "$dir/err"' \
  "heads cut, context shifts: '$cs' vs '$cs1' ($(grep -c "context shift" "$dir/err") shift messages)"

echo "== layers split pipeline"
# 100 tokens in one forward pass (--batch 128) cut into pieces: 32 + 32 +
# 32 + 4 automatically, 34 x 3 and 100 x 1 with --micro-batch; the logits of
# every position bit for bit those of one process
toks100=$(seq -s, 3 5 500)
"$GROK" eval -m "$dir/g1.gguf" --tokens "$toks100" --batch 128 --logits "$dir/pipe.1.f32" -t 1 2>/dev/null ||
  bad "eval in one process"
for n in 2 3; do
  for mb in 0 3 1; do
    mpi "$n" eval -m "$dir/g1.gguf" --tokens "$toks100" --batch 128 --logits "$dir/pipe.f32" -t 1 --split layers \
      --micro-batch $mb >/dev/null 2>"$dir/err" || { bad "pipeline $n ranks, --micro-batch $mb: $(tail -3 "$dir/err")"; continue; }
    check 'cmp -s "$dir/pipe.1.f32" "$dir/pipe.f32"' "pipeline $n ranks, --micro-batch $mb: logits differ from one process"
  done
done
long="Once upon a time there was a little model that ran on three processes at once and never lost a token"
want=$("$GROK" run -m "$dir/g1q.gguf" -p "$long" -n 12 --seed 3 --temp 0.9 -t 1 --no-stats 2>/dev/null)
got=$(mpi 3 run -m "$dir/g1q.gguf" -p "$long" -n 12 --seed 3 --temp 0.9 -t 1 --no-stats --split layers --micro-batch 4 2>/dev/null)
check '[ -n "$want" ] && [ "$got" = "$want" ]' "pipeline, 3 ranks: sampled text '$got' vs '$want'"
# a reply that fills the context goes on after context shifts (every rank
# moves its layers' cache), the turns' prompts cut into pieces of 4
cs1=$(printf 'Tell a long story.\nAnother one.\n' | "$GROK" chat -m "$dir/g1.gguf" --temp 0 -n 150 --ctx 128 -t 1 2>/dev/null)
cs=$(printf 'Tell a long story.\nAnother one.\n' | mpi 2 chat -m "$dir/g1.gguf" --temp 0 -n 150 --ctx 128 -t 1 \
  --split layers --micro-batch 4 2>"$dir/err")
check '[ -n "$cs1" ] && [ "$cs" = "$cs1" ] && grep -q "context shift" "$dir/err"' \
  "pipeline, context shifts: '$cs' vs '$cs1' ($(grep -c "context shift" "$dir/err") shift messages)"
# grok bench --parallel: several sequences decoding together (what bench/mpi measures)
"$GROK" bench -m "$dir/g1.gguf" -p 0 -n 4 --parallel 3 -r 1 --no-bw -t 1 >"$dir/bp" 2>&1
check 'grep -q "| tg4x3 " "$dir/bp"' "bench --parallel 3: $(tail -3 "$dir/bp")"
mpi 2 bench -m "$dir/g1.gguf" -p 40 -n 4 --parallel 3 -r 1 --no-bw -t 1 --split layers >"$dir/bp" 2>&1
check 'grep -q "| pp40 " "$dir/bp" && grep -q "| tg4x3 " "$dir/bp"' "bench --parallel 3 over 2 ranks: $(tail -3 "$dir/bp")"
check 'grep -q "tg4x3: 3 sequences in 2 groups" "$dir/bp"' "bench --parallel 3 over 2 ranks: no groups in flight: $(tail -3 "$dir/bp")"
mpi 3 bench -m "$dir/g1.gguf" -p 0 -n 6 --parallel 4 -r 1 --no-bw -t 1 --split layers >"$dir/bp" 2>&1
check 'grep -q "| tg6x4 " "$dir/bp" && grep -q "tg6x4: 4 sequences in 3 groups" "$dir/bp"' "bench --parallel 4 over 3 ranks: $(tail -3 "$dir/bp")"
mpi 2 run -m "$dir/g1.gguf" -p hi -n 1 -t 1 --split layers --micro-batch x >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "micro-batch needs a token count" "$dir/err"' "bad --micro-batch: $(cat "$dir/err")"

# the load message: one line per rank with its share
mpi 2 run -m "$dir/g1.gguf" -p "hi" -n 1 -t 1 2>"$dir/err" >/dev/null
check 'grep -q "rank 1 (.*): expert FFN columns 64..127 of 128" "$dir/err"' "load message per rank: $(cat "$dir/err")"

echo "== memory per rank"
# experts 4 layers x 8 x 3 x 256 x 512 f32 = 48 MiB of the 53 MiB file
"$GROK" new "$dir/mem.gguf" --embd 256 --layers 4 --heads 4 --kv-heads 2 --ff 512 --experts 8 --experts-used 2 \
  --vocab 2048 --ctx 512 --seed 3 >/dev/null || bad "grok new mem"
rss_of() { awk -v r="$2" -F'|' '$2+0 == r && $3 ~ /[a-z]/ { print $7 + 0 }' "$1"; }
weights_of() { awk -v r="$2" -F'|' '$2+0 == r && $3 ~ /[a-z]/ { print $5 + 0 }' "$1"; }
# what a rank holds besides weights (libraries, MPI, KV, scratch): a rank of a tiny model
mpi 2 bench -m "$dir/g1.gguf" -t 1 -p 16 -n 16 -r 1 --no-bw >"$dir/b0" 2>&1 || bad "bench on the tiny model: $(tail -3 "$dir/b0")"
base=$(rss_of "$dir/b0" 1)
for split in layers experts; do
  mpi 2 bench -m "$dir/mem.gguf" -t 1 -p 16 -n 16 -r 1 --no-bw --split $split >"$dir/b.$split" 2>&1 ||
    bad "bench $split: $(tail -3 "$dir/b.$split")"
  for r in 0 1; do
    w=$(weights_of "$dir/b.$split" $r) rss=$(rss_of "$dir/b.$split" $r)
    # one host: the kernel maps file pages around the touched ones (fault-around),
    # so an experts-split rank also shows the other half of each down_exps row
    # (16 MiB here); on its own host it holds only its share
    extra=0; [ $split = experts ] && extra=8
    check "awk -v w='$w' -v rss='$rss' -v b='$base' -v x=$extra 'BEGIN { exit !(w > 0 && rss <= b + 1.1 * (w + x) + 4) }'" \
      "$split rank $r: peak RSS $rss MiB > base $base + 1.1 x (share $w + $extra) MiB"
  done
  w0=$(weights_of "$dir/b.$split" 0)
  check "awk -v w='$w0' 'BEGIN { exit !(w > 0 && w < 53 * 0.6) }'" "$split: rank 0's share $w0 MiB is not about half the file"
done
grep -q "exchanged .* KiB per generated token" "$dir/b.experts" || bad "bench: bytes per token"

echo "== start-up errors"
"$GROK" new "$dir/narrow.gguf" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 --experts 4 --experts-used 2 \
  --vocab 512 --ctx 256 --type q8_0 >/dev/null
mpi 3 run -m "$dir/narrow.gguf" -p hi -n 1 -t 1 >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "has only 2 blocks of 32 values.*at most 2 ranks" "$dir/err"' "more ranks than slices: $(cat "$dir/err")"
mpi 4 run -m "$dir/g1.gguf" -p hi -n 1 -t 1 --split layers >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "4 ranks but the model has 3 layers" "$dir/err"' "more ranks than layers: $(cat "$dir/err")"
mkdir -p "$dir/hostA" "$dir/hostB" "$dir/hostC"
cp "$dir/g1.gguf" "$dir/hostA/m.gguf"; cp "$dir/g2.gguf" "$dir/hostB/m.gguf"
# the same command line on each "host" (working folder), other files behind the same path
mpmd() { timeout -k 5 60 "${MPIRUN[@]}" -np 1 --wdir "$dir/$1" "$GROK" "${@:3}" : -np 1 --wdir "$dir/$2" "$GROK" "${@:3}"; }
mpmd hostA hostB run -m m.gguf -p hi -n 1 -t 1 >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "rank 1 (.*) sees another model file at m.gguf than rank 0" "$dir/err"' "different file: $(cat "$dir/err")"
mpmd hostA hostC run -m m.gguf -p hi -n 1 -t 1 >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "rank 1 (.*) cannot load the model" "$dir/err"' "missing file: $(cat "$dir/err")"
timeout -k 5 60 "${MPIRUN[@]}" -np 1 "$GROK" run -m "$dir/g1.gguf" -p hi -n 1 --ctx 64 : \
  -np 1 "$GROK" run -m "$dir/g1.gguf" -p hi -n 1 --ctx 128 >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "rank 1 was started with other options than rank 0" "$dir/err"' "different options: $(cat "$dir/err")"
mpi 2 run -m "$dir/g1.gguf" -p hi -n 1 --device cuda >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "CPU backend only" "$dir/err"' "--device cuda under mpirun: $(cat "$dir/err")"
mpi 2 info "$dir/g1.gguf" >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "runs in one process" "$dir/err"' "info under mpirun: $(cat "$dir/err")"
mpi 2 run -m "$dir/g1.gguf" -p hi -n 1 --split rows >/dev/null 2>"$dir/err"; rc=$?
check '[ $rc -ne 0 ] && grep -q "split must be experts or layers" "$dir/err"' "bad --split: $(cat "$dir/err")"
# without mpirun nothing changes (--split is accepted and means one share)
s=$("$GROK" run -m "$dir/g1.gguf" -p "Once upon a time" -n 16 --temp 0 --ignore-eos -t 1 --no-stats --split layers 2>/dev/null)
check '[ "$s" = "$g1" ]' "one process with --split"

# rank_pid MPIRUN_PID RANK: the pid of that rank (a child of mpirun on localhost)
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
  done
}
# wait_gone PID SECONDS: 0 if PID ended within SECONDS
wait_gone() { local i; for i in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
# hit_rank1 LABEL HOW MPIRUN_PID RANK1_PID: signals rank 1 (KILL or STOP); the job
# (--dist-timeout 3, stderr in $dir/err) must end within 10 s, non-zero, with
# mpirun's or the deadline's clear error
hit_rank1() {
  local label=$1 how=$2 mp=$3 r1=$4 rc
  kill -"$how" "$r1"
  if wait_gone "$mp" 10; then
    wait "$mp"; rc=$?
    check '[ $rc -ne 0 ]' "$label$how: the job ended with status 0"
    if [ "$how" = KILL ]; then
      check 'grep -q "exited on signal 9" "$dir/err"' "$label$how: no clear error: $(cat "$dir/err")"
    else
      check 'grep -q "no answer from the other ranks .* within 3 s" "$dir/err"' "$label$how: no clear error: $(cat "$dir/err")"
    fi
  else
    bad "$label$how: the job still runs 10 s after rank 1 was hit"
    kill -9 "$r1" "$mp" 2>/dev/null
  fi
}

echo "== faults"
for how in KILL STOP; do
  "${MPIRUN[@]}" -np 2 "$GROK" run -m "$dir/mem.gguf" -p "hello" -n 100000 --ignore-eos -t 1 --ctx 512 \
    --dist-timeout 3 >"$dir/out" 2>"$dir/err" &
  mp=$!; pids+=("$mp")
  r1=
  for _ in $(seq 100); do r1=$(rank_pid "$mp" 1); [ -n "$r1" ] && [ -s "$dir/out" ] && break; sleep 0.1; done
  [ -n "$r1" ] || { bad "$how: rank 1 not found"; kill -9 "$mp"; continue; }
  hit_rank1 "" "$how" "$mp" "$r1"
  kill -9 "$r1" 2>/dev/null # a stopped rank that mpirun left behind
done

echo "== grok serve under mpirun"
if command -v node >/dev/null && command -v npm >/dev/null; then
  NPM_DIR=${GROK_NPM_DIR:-$HOME/.cache/grok-test-npm}
  mkdir -p "$NPM_DIR"
  exec 9>"$NPM_DIR/.lock"
  flock 9
  if ! cmp -s "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/.installed-lock" || [ ! -d "$NPM_DIR/node_modules/openai" ]; then
    cp "$GROK_SRC/tests/server/package.json" "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error) || bad "npm ci in $NPM_DIR"
    cp "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/.installed-lock"
  fi
  cp "$GROK_SRC"/tests/server/*.mjs "$NPM_DIR/"
  flock -u 9
  for model in g1 mem; do
    : >"$dir/srv.out" # emptied before the server starts: no address of the last one is read
    # (mpirun gives a rank odls_base_sigkill_timeout seconds between SIGTERM and SIGKILL:
    # 1 by default, short on a loaded machine for the server's orderly 503s)
    "${MPIRUN[@]}" --mca odls_base_sigkill_timeout 5 -np 2 "$GROK" serve -m "$dir/$model.gguf" --port 0 --parallel 2 \
      --ctx 4096 -t 1 --max-body 1048576 \
      >"$dir/srv.out" 2>"$dir/srv.err" &
    mp=$!; pids+=("$mp")
    URL=
    for _ in $(seq 100); do
      URL=$(sed -n 's/^grok serve: listening on \(http:[^ ]*\).*/\1/p' "$dir/srv.out")
      [ -n "$URL" ] && break; sleep 0.1
    done
    [ -n "$URL" ] || { bad "server under mpirun did not start: $(cat "$dir/srv.err")"; kill -9 "$mp"; continue; }
    if [ $model = g1 ]; then # the API as in test_server.sh, two slots, two ranks
      timeout 120 node "$NPM_DIR/client.mjs" api "$URL" >"$dir/client" 2>&1; rc=$?
      check '[ $rc -eq 0 ]' "openai client against the server under mpirun: $(tail -5 "$dir/client")"
      check 'grep -q "rank 1 (.*): expert FFN columns" "$dir/srv.err"' "serve: load message per rank"
      kill -TERM "$mp"; wait_gone "$mp" 10 || bad "server under mpirun: no exit 10 s after SIGTERM"
      continue
    fi
    # a long streamed completion, then rank 1 is killed
    curl -s -N "$URL/v1/completions" -H 'content-type: application/json' \
      -d '{"prompt":"hi","max_tokens":4000,"stream":true}' >"$dir/stream" 2>&1 &
    cp=$!; pids+=("$cp")
    for _ in $(seq 100); do [ -s "$dir/stream" ] && break; sleep 0.1; done
    r1=$(rank_pid "$mp" 1)
    [ -n "$r1" ] && kill -9 "$r1"
    wait_gone "$mp" 10 || bad "server under mpirun: still running 10 s after rank 1 was killed"
    wait_gone "$cp" 5
    check 'grep -q "\"error\".*shutting down" "$dir/stream"' "stream: no error event after a rank died: $(tail -c 300 "$dir/stream")"
    check 'grep -q "stopped: shutting down" "$dir/srv.err"' "server: no clear error: $(cat "$dir/srv.err")"
  done
else
  echo "(node/npm missing: the server part is skipped)"
fi

echo "== prompt cache under mpirun (KV read and write on every rank)"
# as test_prompt_cache.sh: a prompt whose prefix another request evicted
# comes back from the prompt cache, with the same greedy tokens
complete() {
  python3 - "$URL" "$1" "${2:-}" <<'EOF'
import json, sys, urllib.request
url, seed, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pre = [(i * 37 + (11 if kind != "other" else 5)) % 500 + 1 for i in range(200)]
prompt = pre + [(seed * 97 + i * 13) % 500 + 1 for i in range(10)]
body = json.dumps({"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 1}).encode()
req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
d = json.load(urllib.request.urlopen(req, timeout=30))
print(d["usage"]["prompt_tokens_details"]["cached_tokens"], ",".join(d["choices"][0]["logprobs"]["tokens"]).replace(" ", "_"))
EOF
}
# serve_on N ARGS...: a server with N ranks (1: no mpirun); sets URL and SRV
serve_on() {
  local n=$1; shift
  : >"$dir/pc.out"
  if [ "$n" = 1 ]; then "$GROK" serve "$@" >"$dir/pc.out" 2>"$dir/pc.err" &
  else "${MPIRUN[@]}" -np "$n" "$GROK" serve "$@" >"$dir/pc.out" 2>"$dir/pc.err" &
  fi
  SRV=$!; pids+=("$SRV"); URL=
  for _ in $(seq 100); do
    URL=$(sed -n 's/^grok serve: listening on \(http:[^ ]*\).*/\1/p' "$dir/pc.out"); [ -n "$URL" ] && break; sleep 0.1
  done
}
pc_args=(-m "$dir/g1.gguf" --port 0 -t 1 --parallel 1 --ctx 512 --cache-ram 16)
serve_on 1 "${pc_args[@]}"
want=$([ -n "$URL" ] && complete 2 | cut -d' ' -f2)
kill "$SRV"; wait_gone "$SRV" 10
for split in experts layers; do
  serve_on 2 "${pc_args[@]}" --split $split
  [ -n "$URL" ] || { bad "prompt cache server ($split) did not start: $(cat "$dir/pc.err")"; kill -9 "$SRV"; continue; }
  a=$(complete 1); o=$(complete 0 other); c=$(complete 2)
  check '[ "${a%% *}" = 0 ] && [ "${c%% *}" -ge 192 ]' "$split: the prefix comes from the prompt cache: '$a' / '$c'"
  check '[ -n "$want" ] && [ "${c#* }" = "$want" ]' "$split: greedy tokens after a restore: '${c#* }' vs '$want'"
  kill -TERM "$SRV"; wait_gone "$SRV" 10 || bad "prompt cache server ($split): no exit 10 s after SIGTERM"
done

echo "== slot files under mpirun"
# a slot saved by 2 ranks (heads 1 + 2, each rank its heads' cache) restores
# in one process, and one saved by one process under 2 ranks: one format
slot() {
  python3 - "$URL" "$1" "$2" <<'EOF'
import json, sys, urllib.request
r = urllib.request.Request(sys.argv[1] + "/slots/0?action=" + sys.argv[2], json.dumps({"filename": sys.argv[3]}).encode(),
                           {"Content-Type": "application/json"}, method="POST")
print(urllib.request.urlopen(r, timeout=30).status)
EOF
}
sv_args=(-m "$dir/h3q.gguf" --port 0 -t 1 --parallel 1 --ctx 512 --kv q8_0 --slot-save-path "$dir/slots")
serve_on 2 "${sv_args[@]}"
a=$([ -n "$URL" ] && complete 2); s1=$([ -n "$URL" ] && slot save mpi.bin)
kill -TERM "$SRV"; wait_gone "$SRV" 10 || bad "slot server: no exit 10 s after SIGTERM"
serve_on 1 "${sv_args[@]}"
r1=$([ -n "$URL" ] && slot restore mpi.bin); b=$([ -n "$URL" ] && complete 2); s2=$([ -n "$URL" ] && slot save one.bin)
kill "$SRV"; wait_gone "$SRV" 10
serve_on 2 "${sv_args[@]}"
r2=$([ -n "$URL" ] && slot restore one.bin); c=$([ -n "$URL" ] && complete 2)
kill -TERM "$SRV"; wait_gone "$SRV" 10 || bad "slot server: no exit 10 s after SIGTERM"
check '[ "$s1 $r1 $s2 $r2" = "200 200 200 200" ] && [ "${a%% *}" = 0 ]' "slot save/restore across 1 and 2 ranks: $s1 $r1 $s2 $r2, '$a'"
check '[ "${b%% *}" -ge 200 ] && [ "${c%% *}" -ge 200 ] && [ -n "${a#* }" ] && [ "${b#* }" = "${a#* }" ] && [ "${c#* }" = "${a#* }" ]' \
  "restored slots: cached and greedy tokens '$b' (one process) '$c' (2 ranks) vs '$a'"
check '[ "$(stat -c %s "$dir/slots/mpi.bin")" = "$(stat -c %s "$dir/slots/one.bin")" ]' "slot files of one size"

echo "== layers split pipeline: server slots (batches of several sequences)"
# four requests at once (greedy and seeded sampling) on four slots: under
# the layers split the slots go in one group per rank whose batches are in
# flight at once (prompt chunks too, cut into pieces with --micro-batch);
# each request's tokens and log-probabilities are those of one process
together() {
  python3 - "$URL" <<'EOF'
import json, sys, threading, urllib.request
url, out = sys.argv[1], {}
def one(k):
    prompt = [(k * 31 + i * 7) % 500 + 1 for i in range(40 + 9 * k)]
    req = {"prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 1, "ignore_eos": True}
    if k % 2: req.update(temperature=0.9, seed=40 + k) # seeded sampling
    body = json.dumps(req).encode()
    req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
    c = json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["logprobs"]
    out[k] = ",".join("%s:%.6f" % (t, l) for t, l in zip(c["tokens"], c["token_logprobs"]))
ts = [threading.Thread(target=one, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print(" ".join(out.get(k, "none").replace(" ", "_") for k in range(4)))
EOF
}
sl_args=(-m "$dir/g1.gguf" --port 0 -t 1 --parallel 4 --ctx 1024)
serve_on 1 "${sl_args[@]}"
want=$([ -n "$URL" ] && together)
kill "$SRV"; wait_gone "$SRV" 10
for cfg in "2 2" "3 0"; do
  set -- $cfg
  serve_on "$1" "${sl_args[@]}" --split layers --micro-batch "$2"
  [ -n "$URL" ] || { bad "slots server ($1 ranks) did not start: $(cat "$dir/pc.err")"; kill -9 "$SRV"; continue; }
  got=$(together)
  check '[ -n "$want" ] && [ "${want#*none}" = "$want" ] && [ "$got" = "$want" ]' \
    "slots, $1 ranks, --micro-batch $2: '$got' vs one process '$want'"
  # SIGTERM to rank 0 (not to mpirun, whose own teardown with 3 ranks sometimes hangs
  # after every rank has exited: Open MPI): the server tells the others to exit
  r0=$(rank_pid "$SRV" 0)
  [ -n "$r0" ] && kill -TERM "$r0"
  if wait_gone "$SRV" 10; then
    wait "$SRV"; rc=$?
    check '[ $rc -eq 0 ]' "slots server ($1 ranks): status $rc after SIGTERM to rank 0"
  else
    bad "slots server ($1 ranks): no exit 10 s after SIGTERM to rank 0"; kill -9 "$SRV"
  fi
done

echo "== layers split pipeline: faults"
# perplexity over a long text in forward passes of 256 tokens, cut into
# pieces of 8 over 3 ranks; the middle rank is killed or stopped while
# pieces are in flight
seq 1 30000 | tr '\n' ' ' >"$dir/long.txt"
for how in KILL STOP; do
  "${MPIRUN[@]}" -np 3 "$GROK" perplexity -m "$dir/mem.gguf" -f "$dir/long.txt" -t 1 --ctx 256 --split layers \
    --micro-batch 8 --dist-timeout 3 >"$dir/out" 2>"$dir/err" &
  mp=$!; pids+=("$mp")
  r1=
  for _ in $(seq 100); do r1=$(rank_pid "$mp" 1); [ -n "$r1" ] && grep -q "^\[1/" "$dir/err" && break; sleep 0.1; done
  if [ -z "$r1" ] || ! kill -0 "$mp" 2>/dev/null; then bad "pipeline $how: the job was not running: $(tail -3 "$dir/err")"; continue; fi
  hit_rank1 "pipeline " "$how" "$mp" "$r1"
  kill -9 "$r1" 2>/dev/null
done

# a server over 3 ranks whose three slots decode in three groups in flight
# at once (with context shifts: replies longer than the context); the
# middle rank is killed, or stopped: the job ends within 10 s (the streams'
# error events are checked above, with a longer sigkill timeout: on a loaded
# machine mpirun may kill rank 0 before it writes them)
for how in KILL STOP; do
  serve_on 3 -m "$dir/mem.gguf" --port 0 -t 1 --parallel 3 --ctx 512 --context-shift --split layers --dist-timeout 3
  if [ -z "$URL" ]; then
    bad "pipelined server (3 ranks) did not start: $(cat "$dir/pc.err")"; kill -9 "$SRV"; continue
  fi
  for k in 1 2 3; do
    curl -s -N "$URL/v1/completions" -H 'content-type: application/json' \
      -d "{\"prompt\":\"hi $k\",\"max_tokens\":100000,\"stream\":true,\"ignore_eos\":true}" >"$dir/fs$k" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do [ -s "$dir/fs1" ] && [ -s "$dir/fs2" ] && [ -s "$dir/fs3" ] && break; sleep 0.1; done
  r1=$(rank_pid "$SRV" 1)
  check '[ -n "$r1" ] && [ -s "$dir/fs3" ] && kill -0 "$SRV"' "pipelined server $how: not streaming: $(tail -3 "$dir/pc.err")"
  [ -n "$r1" ] && kill -"$how" "$r1"
  if wait_gone "$SRV" 10; then
    wait "$SRV"; rc=$?
    check '[ $rc -ne 0 ]' "pipelined server $how: status 0 after rank 1 was hit"
  else
    bad "pipelined server $how (3 ranks): still running 10 s after rank 1 was hit"; kill -9 "$SRV"
  fi
  kill -9 "$r1" 2>/dev/null
done

echo "mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
