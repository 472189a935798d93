#!/usr/bin/env bash
# test_nano_model.sh - the shipped grok-nano model (models/grok-nano.gguf,
# card models/grok-nano.md):
#   1. its sha256 matches models/grok-nano.sha256;
#   2. `grok info` loads it;
#   3. held-out loss: `grok eval` on held-out dialogues
#      (tools/train/heldout_eval.txt: token ids and reply mask of dialogues
#      about words never asked about in training); the mean reply-token loss
#      must be below MAX_HELDOUT_LOSS (the card's figure plus a margin);
#      needs /usr/bin/python3 (or python3) with numpy, else this part is skipped;
#   4. held-out dictionary questions: greedy `grok run` answers to
#      "What does WORD mean?" for N_WORDS held-out words must share a content
#      word with the WordNet definition at least MIN_SCORE of the time
#      (tools/train/chat_eval.py, standard library only). grok-nano is
#      weak at this (16 hits in 100, see the card: these words were never taught), so also
#   5. persona: at least MIN_PERSONA of the greedy replies to four persona
#      questions must name grok-nano.
# Environment (from ctest): GROK (binary), GROK_SRC (repo root), GROK_TMP.
set -u
export LC_ALL=C

: "${GROK:?GROK must name the grok binary}"
: "${GROK_SRC:?GROK_SRC must name the repository root}"
GROK_TMP=${GROK_TMP:-${TMPDIR:-/tmp}}

MODEL=$GROK_SRC/models/grok-nano.gguf
TRAIN=$GROK_SRC/tools/train
# Thresholds, from the measurements in models/grok-nano.md.
MAX_HELDOUT_LOSS=1.70   # measured 1.53 with grok.c on these 48 dialogues
N_WORDS=100
MIN_SCORE=0.10         # measured 16/100 (0.16)
MIN_PERSONA=3          # measured 4 of 4; one may flip on another SIMD path

fail=0
tmp=$(mktemp -d "$GROK_TMP/nano.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# 1. checksum
want=$(awk '{print $1}' "$GROK_SRC/models/grok-nano.sha256")
have=$(sha256sum "$MODEL" | awk '{print $1}')
if [ "$want" != "$have" ]; then
    echo "FAIL: sha256 of $MODEL is $have, models/grok-nano.sha256 says $want"
    exit 1
fi
echo "ok: sha256 $have"

# 2. loads
if ! "$GROK" info "$MODEL" --no-tensors > "$tmp/info.txt" 2>&1; then
    echo "FAIL: grok info cannot load the model"; cat "$tmp/info.txt"; exit 1
fi
echo "ok: grok info loads it"

# 3. held-out loss
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import numpy" >/dev/null 2>&1; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
    echo "skip: no python3 with numpy for the held-out loss"
else
    n=0
    while IFS=$'\t' read -r ids mask; do
        "$GROK" eval -m "$MODEL" --tokens "$ids" --logits "$tmp/l$n.f32" --kv f32 -t 2 >/dev/null 2>&1 ||
            { echo "FAIL: grok eval failed on held-out dialogue $n"; exit 1; }
        printf '%s\t%s\n' "$ids" "$mask" > "$tmp/d$n.txt"
        n=$((n + 1))
    done < "$TRAIN/heldout_eval.txt"
    if ! "$PY" - "$tmp" "$n" "$MAX_HELDOUT_LOSS" <<'EOF'
import sys
import numpy as np
d, n, lim = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
tot = cnt = 0.0
for i in range(n):
    ids, mask = open("%s/d%d.txt" % (d, i)).read().strip().split("\t")
    ids = [int(x) for x in ids.split(",")]
    mask = [int(x) for x in mask.split(",")]
    lg = np.fromfile("%s/l%d.f32" % (d, i), np.float32).reshape(len(ids), -1).astype(np.float64)
    lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
    for t in range(len(ids) - 1):
        if mask[t + 1]:
            tot += lse[t] - lg[t, ids[t + 1]]
            cnt += 1
loss = tot / cnt
print("held-out reply loss %.4f (perplexity %.2f) over %d tokens of %d dialogues; limit %.2f" %
      (loss, np.exp(loss), cnt, n, lim))
sys.exit(0 if loss < lim else 1)
EOF
    then
        echo "FAIL: held-out loss above the limit"; fail=1
    fi
fi

# 4. held-out dictionary questions
PYS=$PY
[ -z "$PYS" ] && PYS=$(command -v python3 || true)
if [ -z "$PYS" ]; then
    echo "skip: no python3 for the dictionary questions"
elif ! "$PYS" "$TRAIN/chat_eval.py" --grok "$GROK" --model "$MODEL" --words "$TRAIN/heldout_words.tsv" \
        --n "$N_WORDS" --min-score "$MIN_SCORE"; then
    fail=1
fi

# 5. persona: greedy replies to four persona questions; at least MIN_PERSONA
#    of them must name grok-nano (the card: "Who are you?" gets the hand-written
#    answer of another persona question, the other three name grok-nano)
S='<|separator|>'
named=0
for q in "Who are you?" "What are you?" "What is your name?" "Hi!"; do
    reply=$("$GROK" run -m "$MODEL" -p "Human: $q$S"$'\n\n'"Assistant:" --temp 0 --stop "$S" -n 48 \
            --no-stats -t 1 2>/dev/null)
    case "$reply" in
    *grok-nano*) named=$((named + 1)); echo "ok: '$q' ->$reply" ;;
    *) echo "note: the greedy reply to '$q' does not name grok-nano:$reply" ;;
    esac
done
if [ $named -ge $MIN_PERSONA ]; then
    echo "ok: $named of 4 persona replies name grok-nano (need $MIN_PERSONA)"
else
    echo "FAIL: only $named of 4 persona replies name grok-nano (need $MIN_PERSONA)"; fail=1
fi

[ $fail = 0 ] && echo "PASS" || echo "FAIL"
exit $fail
