#!/usr/bin/env bash
# grok serve --context-shift with grok-nano (curl + python3's json): a chat
# whose messages outgrow the context keeps its system message, drops the
# oldest turns and still answers; the turns it kept come from the slot's
# cache by a context shift (usage.prompt_tokens_details.cached_tokens covers
# them, not only the system prompt); without --context-shift the same
# request is a 400. Then the quantized caches (q8_0 keys, q4_0 values).
# (grok chat's context shift is checked in test_chat.sh, the numbers in
# tests/unit/test_kv.c.) Exit 77 when grok-nano or curl is missing.
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}"
SRC=${GROK_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
nano="$SRC/models/grok-nano.gguf"
[ -f "$nano" ] || { echo "SKIP: $nano not found"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl not found"; exit 77; }
T="$GROK_TMP/context_shift"; mkdir -p "$T"
pass=0 fail=0 pids=()
check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

start_server() { # NAME ARGS... : sets URL and PID
  local name=$1
  shift
  "$GROK" serve -m "$nano" --port 0 -t 1 --parallel 1 --ctx 160 "$@" >"$T/$name.out" 2>"$T/$name.err" &
  PID=$!
  pids+=("$PID")
  URL=
  for _ in $(seq 100); do
    URL=$(sed -n 's/^grok serve: listening on \(http:[^ ]*\).*/\1/p' "$T/$name.out" 2>/dev/null)
    [ -n "$URL" ] && break
    sleep 0.1
  done
  [ -n "$URL" ] || { echo "FAIL: $name did not start: $(cat "$T/$name.err")"; exit 1; }
}

# the conversation after N questions and their answers, plus question N+1
body() {
  python3 - "$1" "$T/answers" <<'EOF'
import json, sys
n = int(sys.argv[1]); words = "happy sad big small fast slow warm".split()
answers = open(sys.argv[2]).read().splitlines() if n else []
msgs = [{"role": "system", "content": "Be brief."}]
for i in range(n):
    msgs += [{"role": "user", "content": f"What does {words[i]} mean?"}, {"role": "assistant", "content": answers[i]}]
msgs.append({"role": "user", "content": f"What does {words[n]} mean?"})
print(json.dumps({"messages": msgs, "temperature": 0, "max_tokens": 32}))
EOF
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

run_chat() { # NAME ARGS...: five questions, each with the whole conversation so far
  local name=$1
  shift
  start_server "$name" "$@"
  : >"$T/answers"
  : >"$T/$name.cached"
  for i in 0 1 2 3 4; do
    r=$(curl -s -X POST "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$(body $i)")
    a=$(field 'd["choices"][0]["message"]["content"].replace("\n", " ")' <<<"$r" 2>/dev/null)
    c=$(field 'd["usage"]["prompt_tokens_details"]["cached_tokens"]' <<<"$r" 2>/dev/null)
    check '[ -n "$a" ]' "$name: an answer to question $((i + 1)): $r"
    echo "$a" >>"$T/answers"
    echo "${c:-0}" >>"$T/$name.cached"
  done
  kill "$PID"
  wait "$PID" 2>/dev/null
}

run_chat f16 --context-shift -v
drops=$(grep -c "context shift: dropped" "$T/f16.err")
check '[ "$drops" -ge 1 ]' "the conversation outgrew 160 tokens and dropped turns: $(cat "$T/f16.err")"
# after the first drop, the kept turns come from the cache: far more than the system prompt
first=$(grep -n "context shift: dropped" "$T/f16.err" | head -n 1)
sys_tokens=$("$GROK" tokenize -m "$nano" -- $'System: Be brief.<|separator|>\n\n' | wc -w)
max_cached=$(sort -n "$T/f16.cached" | tail -n 1)
last_cached=$(tail -n 1 "$T/f16.cached")
check '[ "$last_cached" -gt $((sys_tokens + 16)) ]' \
  "the request after a drop reuses its kept turns (cached $last_cached, system prompt $sys_tokens tokens): $(tr '\n' ' ' <"$T/f16.cached")"
echo "cached tokens per request: $(tr '\n' ' ' <"$T/f16.cached"); system prompt $sys_tokens; $first"

# without --context-shift the too-long conversation is refused
start_server plain
code=$(curl -s -o "$T/plain.json" -w '%{http_code}' -X POST "$URL/v1/chat/completions" \
  -H 'Content-Type: application/json' -d "$(body 5)")
check '[ "$code" = 400 ] && grep -q context_length_exceeded "$T/plain.json"' \
  "without --context-shift: 400 context_length_exceeded ($code $(cat "$T/plain.json"))"
kill "$PID"
wait "$PID" 2>/dev/null

run_chat quant --context-shift -v --kv-k q8_0 --kv-v q4_0
check '[ "$(tail -n 1 "$T/quant.cached")" -gt $((sys_tokens + 16)) ]' \
  "q8_0/q4_0 cache: the request after a drop reuses its kept turns: $(tr '\n' ' ' <"$T/quant.cached")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
