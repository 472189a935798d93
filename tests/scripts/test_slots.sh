#!/usr/bin/env bash
# grok serve --slot-save-path end to end (python3's urllib, token-id prompts
# on a tiny random model, two slots): GET /slots; a slot saved after a
# request, restored into the other slot of the same server and, after a
# restart, of a new one, gives the same greedy continuation as the original
# from its cache (cached_tokens); erase; a save while the slot runs a
# request is a 409; bad input (file names, slots, actions, fields) is a 400
# / 404, no --slot-save-path a 501; truncated, corrupt, longer, foreign
# (another KV type, another model) and non-slot files are 400s that say why
# and leave a slot that was not touched as it was; a failed write (the file
# size limit, as a full disk) is an error that leaves no file behind.
set -uo pipefail
: "${GROK:?}" "${GROK_TMP:?}"
T="$GROK_TMP/slots"
rm -rf "$T"
mkdir -p "$T"
pass=0 fail=0 pids=()
trap stop_servers EXIT
PY=python3
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

model=$T/m.gguf
other=$T/other.gguf
"$GROK" new "$model" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 --vocab 512 \
  --seed 5 >/dev/null || { echo "FAIL: grok new"; exit 1; }
"$GROK" new "$other" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 --vocab 512 \
  --seed 6 >/dev/null || { echo "FAIL: grok new"; exit 1; }
S=$T/saved

start_server() { serve_start "$1" -m "$2" -t 1 --parallel 2 --ctx 512 "${@:3}"; } # NAME MODEL ARGS...
stop_server() { kill "$PID"; wait "$PID" 2>/dev/null; }

# req METHOD PATH [BODY]: prints "STATUS BODY"
req() {
  "$PY" - "$URL" "$@" <<'EOF'
import sys, urllib.request, urllib.error
url, method, path = sys.argv[1], sys.argv[2], sys.argv[3]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
r = urllib.request.Request(url + path, body, {"Content-Type": "application/json"} if body else {}, method=method)
try:
    with urllib.request.urlopen(r) as f: print(f.status, f.read().decode())
except urllib.error.HTTPError as e: print(e.code, e.read().decode())
EOF
}
# a 300-token prompt, greedy, 16 tokens: prints "cached_tokens greedy-tokens"
complete() {
  "$PY" - "$URL" <<'EOF'
import json, sys, urllib.request
prompt = [(i * 37 + 11) % 500 + 1 for i in range(300)]
body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0, "logprobs": 1, "ignore_eos": True}).encode()
d = json.load(urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/v1/completions", body, {"Content-Type": "application/json"})))
print(d["usage"]["prompt_tokens_details"]["cached_tokens"], ",".join(d["choices"][0]["logprobs"]["tokens"]).replace(" ", "_"))
EOF
}
jget() { "$PY" -c "import json,sys; s=sys.stdin.read(); d=json.loads(s[s.index(' ')+1:]); print($1)"; }
status() { echo "${1%% *}"; }

start_server a "$model" --slot-save-path "$S" -v
r=$(req GET /slots)
check '[ "$(status "$r")" = 200 ] && [ "$(jget "len(d)" <<<"$r")" = 2 ]' "GET /slots lists two slots: $r"
orig=$(complete)
want=${orig#* }
check '[ "${orig%% *}" = 0 ]' "the first request computes its prompt: $orig"
r=$(req GET /slots)
n0=$(jget 'd[0]["n_cached"]' <<<"$r")
check '[ "$n0" -ge 300 ] && [ "$(jget "d[0][\"is_processing\"]" <<<"$r")" = False ]' "slot 0 holds the request: $r"
r=$(req POST '/slots/0?action=save' '{"filename": "a.bin"}')
check '[ "$(status "$r")" = 200 ] && [ "$(jget "d[\"n_saved\"]" <<<"$r")" = "$n0" ] && [ -f "$S/a.bin" ]' "save slot 0: $r"
check '[ "$(jget "d[\"n_written\"]" <<<"$r")" = "$(stat -c %s "$S/a.bin")" ]' "n_written is the file's size: $r"
# the same server: into slot 1, slot 0 emptied; the request takes slot 1
r=$(req POST '/slots/1?action=restore' '{"filename": "a.bin"}')
check '[ "$(status "$r")" = 200 ] && [ "$(jget "d[\"n_restored\"]" <<<"$r")" = "$n0" ]' "restore into slot 1: $r"
r=$(req POST '/slots/0?action=erase')
check '[ "$(status "$r")" = 200 ] && [ "$(jget "d[\"n_erased\"]" <<<"$r")" = "$n0" ]' "erase slot 0 (no body): $r"
r=$(req GET /slots)
check '[ "$(jget "d[0][\"n_cached\"], d[1][\"n_cached\"]" <<<"$r")" = "0 $n0" ]' "slot 0 empty, slot 1 restored: $r"
got=$(complete)
check '[ "${got%% *}" = 299 ] && [ "${got#* }" = "$want" ]' "from the restored slot: cached 299, same greedy tokens: $got vs $want"

# a save while the slot is running a request: 409
r=$("$PY" - "$URL" <<'EOF'
import json, sys, threading, urllib.request, urllib.error
url = sys.argv[1]
def post(path, body):
    r = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r) as f: return f.status, f.read().decode()
    except urllib.error.HTTPError as e: return e.code, e.read().decode()
out = "never caught the slot busy"
for attempt in range(5):  # a 480-token reply: save both slots until one answers that it is busy
    prompt = [(i * 53 + attempt) % 500 + 1 for i in range(10)]
    t = threading.Thread(target=post, args=("/v1/completions", {"prompt": prompt, "max_tokens": 480, "ignore_eos": True}))
    t.start()
    caught = None
    while t.is_alive() and caught is None:
        for sid in (0, 1):
            st, body = post(f"/slots/{sid}?action=save", {"filename": "busy.bin"})
            if st != 200: caught = f"{st} {body}"; break
    t.join()
    if caught: out = caught; break
print(out)
EOF
)
check '[ "${r%% *}" = 409 ] && grep -q "processing a request" <<<"$r"' "save of a busy slot: $r"

# bad input
r=$(req POST '/slots/0?action=save' '{"filename": "../x"}'); check '[ "$(status "$r")" = 400 ]' "'../x': $r"
r=$(req POST '/slots/0?action=save' '{"filename": "a/b"}'); check '[ "$(status "$r")" = 400 ]' "'a/b': $r"
r=$(req POST '/slots/0?action=save' '{"filename": ".hidden"}'); check '[ "$(status "$r")" = 400 ]' "'.hidden': $r"
r=$(req POST '/slots/0?action=save' '{"filename": ""}'); check '[ "$(status "$r")" = 400 ]' "empty name: $r"
r=$(req POST '/slots/0?action=save' '{"filename": 7}'); check '[ "$(status "$r")" = 400 ]' "a number: $r"
r=$(req POST '/slots/0?action=save' '{}'); check '[ "$(status "$r")" = 400 ]' "no filename: $r"
r=$(req POST '/slots/0?action=save' '{"filename": "x", "extra": 1}'); check '[ "$(status "$r")" = 400 ]' "unknown field: $r"
r=$(req POST '/slots/0?action=fly' '{"filename": "x"}'); check '[ "$(status "$r")" = 400 ]' "unknown action: $r"
r=$(req POST '/slots/0' '{"filename": "x"}'); check '[ "$(status "$r")" = 400 ]' "no action: $r"
r=$(req POST '/slots/2?action=save' '{"filename": "x"}'); check '[ "$(status "$r")" = 404 ]' "slot 2 of 2: $r"
r=$(req POST '/slots/x?action=save' '{"filename": "x"}'); check '[ "$(status "$r")" = 404 ]' "slot 'x': $r"
r=$(req POST '/slots/0?action=restore' '{"filename": "nothing.bin"}'); check '[ "$(status "$r")" = 404 ]' "no such file: $r"
r=$(req GET '/slots/0?action=save'); check '[ "$(status "$r")" = 405 ]' "GET on a slot: $r"

# bad files, restored into slot 1 (which holds the request): each a 400 that says why
"$PY" - "$S" <<'EOF'
import sys
d = sys.argv[1]; a = open(f"{d}/a.bin", "rb").read()
open(f"{d}/trunc.bin", "wb").write(a[:len(a) // 2])
open(f"{d}/short.bin", "wb").write(a[:20])
open(f"{d}/long.bin", "wb").write(a + b"\0")
c = bytearray(a); c[len(c) - 100] ^= 1; open(f"{d}/corrupt.bin", "wb").write(bytes(c))
t = bytearray(a); t[48] ^= 1; open(f"{d}/tok.bin", "wb").write(bytes(t))
open(f"{d}/garbage.bin", "wb").write(b"GGUF" + bytes(200))
EOF
for f in trunc:truncated short:truncated long:longer corrupt:checksum tok:checksum garbage:"not a grok.c slot file"; do
  r=$(req POST '/slots/1?action=restore' "{\"filename\": \"${f%%:*}.bin\"}")
  check '[ "$(status "$r")" = 400 ] && grep -q "${f#*:}" <<<"$r"' "${f%%:*}.bin: $r"
done
r=$(req POST '/slots/0?action=restore' '{"filename": "short.bin"}')
check 'grep -q "the slot is unchanged" <<<"$r"' "a file rejected by its header does not touch the slot: $r"
r=$(req GET /slots)
check '[ "$(jget "d[1][\"n_cached\"]" <<<"$r")" = 0 ]' "a slot whose restore failed part-way is empty: $r"
grep -q "slot 0 save a.bin" "$T/a.err"
check '[ $? = 0 ]' "-v logs slot operations: $(cat "$T/a.err")"
stop_server

# a restart: slot 1 of a new server, same greedy continuation
start_server b "$model" --slot-save-path "$S"
r=$(req POST '/slots/1?action=restore' '{"filename": "a.bin"}')
check '[ "$(status "$r")" = 200 ] && [ "$(jget "d[\"n_restored\"]" <<<"$r")" = "$n0" ]' "restore after a restart: $r"
got=$(complete)
check '[ "${got%% *}" = 299 ] && [ "${got#* }" = "$want" ]' "after a restart: cached 299, same greedy tokens: $got vs $want"
stop_server

# another KV type, another model: refused by the header, never loaded
start_server bf16 "$model" --slot-save-path "$S" --kv bf16
r=$(req POST '/slots/0?action=restore' '{"filename": "a.bin"}')
check '[ "$(status "$r")" = 400 ] && grep -q "another model or another KV cache type" <<<"$r"' "bf16 KV (same size per position): $r"
stop_server
start_server other "$other" --slot-save-path "$S"
r=$(req POST '/slots/0?action=restore' '{"filename": "a.bin"}')
check '[ "$(status "$r")" = 400 ] && grep -q "another model" <<<"$r"' "another model: $r"
stop_server

# no --slot-save-path: 501 (erase and GET /slots still work)
start_server off "$model"
r=$(req POST '/slots/0?action=save' '{"filename": "a.bin"}'); check '[ "$(status "$r")" = 501 ]' "no --slot-save-path: $r"
r=$(req POST '/slots/0?action=erase'); check '[ "$(status "$r")" = 200 ]' "erase without a save path: $r"
stop_server

# a write that fails part-way (the file size limit stands in for a full disk): an error, no file left
cp "$S/a.bin" "$T/a.keep"
(ulimit -f 16; start_server fsize "$model" --slot-save-path "$S"; echo "$URL $PID" >"$T/fsize.url"; wait "$PID") &
for _ in $(seq 100); do [ -s "$T/fsize.url" ] && break; sleep 0.1; done
read -r URL PID <"$T/fsize.url"
pids+=("$PID")
complete >/dev/null
r=$(req POST '/slots/0?action=save' '{"filename": "a.bin"}')
check '[ "${r%% *}" -ge 500 ] && grep -q "nothing was written" <<<"$r"' "a failed write: $r"
check 'cmp -s "$S/a.bin" "$T/a.keep" && [ -z "$(ls -A "$S" | grep "^\.")" ]' "the old file is intact, no temporary file: $(ls -A "$S")"
stop_server

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
