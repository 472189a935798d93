#!/usr/bin/env bash
# grok serve --cache-ram / --cache-dir end to end (python3's urllib, token-id
# prompts on a tiny random model, one slot): a shared prefix comes back from
# the prompt cache after another request took the slot
# (usage.prompt_tokens_details.cached_tokens, /metrics hits and misses), with
# the same greedy tokens as a server without the cache; after a restart the
# blocks come from the disk tier; a corrupt block file is ignored with a
# warning; --cache-dir without --cache-ram is refused.
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}"
T="$GROK_TMP/prompt_cache"
rm -rf "$T"
mkdir -p "$T"
pass=0 fail=0 pids=()
trap stop_servers EXIT
PY=python3
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

model=$T/m.gguf
"$GROK" new "$model" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 --vocab 512 \
  --seed 5 >/dev/null || { echo "FAIL: grok new"; exit 1; }

start_server() { serve_start "$1" -m "$model" -t 1 --parallel 1 --ctx 512 "${@:2}"; } # NAME ARGS...
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null; }

# complete SEED: a prompt of the shared 200-token prefix (or, with "other", 200
# other tokens) and 10 tokens of its own; prints "cached_tokens greedy-tokens"
complete() {
  "$PY" - "$URL" "$1" "${2:-}" <<'EOF'
import json, sys, urllib.request
url, seed, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pre = [(i * 37 + (11 if kind != "other" else 5)) % 500 + 1 for i in range(200)]
prompt = pre + [(seed * 97 + i * 13) % 500 + 1 for i in range(10)]
body = json.dumps({"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 1}).encode()
req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
d = json.load(urllib.request.urlopen(req))
print(d["usage"]["prompt_tokens_details"]["cached_tokens"], ",".join(d["choices"][0]["logprobs"]["tokens"]).replace(" ", "_"))
EOF
}
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }

# reference: no prompt cache
start_server plain
want=$(complete 2 | cut -d' ' -f2)
stop_server

start_server cache --cache-ram 16 --cache-dir "$T/dir"
a=$(complete 1)
o=$(complete 0 other) # takes the slot
c=$(complete 2)
check '[ "${a%% *}" = 0 ]' "first request: nothing cached ($a)"
check '[ "${c%% *}" -ge 192 ]' "the shared prefix comes from the prompt cache after another request took the slot: $c"
check '[ "${c#* }" = "$want" ]' "same greedy tokens as without the cache: '${c#* }' vs '$want'"
hits=$(metric 'grok_prompt_cache_lookups_total{result="hit"}')
misses=$(metric 'grok_prompt_cache_lookups_total{result="miss"}')
writes=$(metric 'grok_prompt_cache_disk_total{op="write"}')
check '[ "$hits" -ge 1 ] && [ "$misses" -ge 1 ] && [ "$writes" -ge 6 ]' \
  "/metrics: hits $hits, misses $misses, disk writes $writes"
stop_server

# a restart: the blocks come back from the disk tier
start_server restart --cache-ram 16 --cache-dir "$T/dir"
r=$(complete 3)
check '[ "${r%% *}" -ge 192 ]' "after a restart the prefix comes from --cache-dir: $r"
reads=$(metric 'grok_prompt_cache_disk_total{op="read"}')
check '[ "$reads" -ge 6 ]' "disk reads after the restart: $reads"
stop_server

# corrupt block files: a warning, the prefix is computed again, the answer is right
for f in "$T"/dir/*/*.kv; do printf 'garbage' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null; done
start_server corrupt --cache-ram 16 --cache-dir "$T/dir"
r=$(complete 2)
check '[ "${r#* }" = "$want" ]' "with a corrupt block file: the same greedy tokens ($r)"
check 'grep -q "warning: ignoring .*kv: " "$T/corrupt.err"' "a warning about the corrupt file: $(cat "$T/corrupt.err")"
stop_server

# --cache-disk: ten 480-token prompts (15 block files of ~8.4 KB each) within 1 MiB (125 files):
# the oldest files go, the disk tier stays under the budget, and after a restart the newest prompt
# still comes back from disk while the oldest does not
distinct() { # N: a 480-token prompt of its own; prints cached_tokens
  "$PY" - "$URL" "$1" <<'EOF'
import json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
prompt = [(i * 7 + n * 101 + i * i * n) % 500 + 1 for i in range(480)]
body = json.dumps({"prompt": prompt, "max_tokens": 1, "temperature": 0}).encode()
d = json.load(urllib.request.urlopen(urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})))
print(d["usage"]["prompt_tokens_details"]["cached_tokens"])
EOF
}
start_server disk --cache-ram 16 --cache-dir "$T/dir2" --cache-disk 1
for n in 1 2 3 4 5 6 7 8 9 10; do distinct $n >/dev/null; done
ev=$(metric 'grok_prompt_cache_disk_total{op="evict"}')
db=$(metric grok_prompt_cache_disk_bytes)
du=$(find "$T/dir2" -name '*.kv' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
check '[ "$ev" -ge 20 ] && [ "$db" -le 1048576 ] && [ "$du" = "$db" ]' \
  "--cache-disk 1: files evicted ($ev), bytes on disk $du = the gauge $db <= 1 MiB"
echo "--cache-disk 1: $ev block files evicted, $du bytes left on disk"
stop_server
start_server disk2 --cache-ram 16 --cache-dir "$T/dir2" --cache-disk 1
newest=$(distinct 10)
oldest=$(distinct 1)
check '[ "$newest" = 448 ] && [ "$oldest" = 0 ]' \
  "after a restart the newest prompt comes from disk (cached $newest of 448), the oldest was evicted (cached $oldest)"
stop_server
"$GROK" serve -m "$model" --cache-ram 16 --cache-disk 1 >/dev/null 2>"$T/bad2.err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "needs --cache-dir" "$T/bad2.err"' "--cache-disk without --cache-dir: $rc $(cat "$T/bad2.err")"

"$GROK" serve -m "$model" --cache-dir "$T/dir" >/dev/null 2>"$T/bad.err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "needs --cache-ram" "$T/bad.err"' "--cache-dir without --cache-ram: $rc $(cat "$T/bad.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
