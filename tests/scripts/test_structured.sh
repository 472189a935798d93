#!/usr/bin/env bash
# test_structured.sh - structured outputs, tool calling and the Responses API
# of `grok serve` end to end, with the official `openai` npm package
# (unchanged), zod (the SDK's parse helper) and ajv (validating the replies
# of a random model under several JSON schemas): tests/server/structured.mjs.
# Also `grok run --json-schema/--grammar` and their errors.
# The npm packages (tests/server/package-lock.json) are installed into
# $GROK_NPM_DIR or ~/.cache/grok-test-npm. Env (from ctest): GROK, GROK_SRC,
# GROK_TMP. Exit 77: node/npm missing.
set -euo pipefail
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are needed for the openai client"
  exit 77
fi
: "${GROK:?set GROK to the grok binary}"
GROK_SRC=${GROK_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
GROK_TMP=${GROK_TMP:-/tmp}
mkdir -p "$GROK_TMP"
T=$(mktemp -d "$GROK_TMP/structured.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*"; [ -f "$T/srv.err" ] && tail -20 "$T/srv.err"; exit 1; }

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
npm_packages

t0=$(date +%s)
model=$T/m.gguf
"$GROK" new "$model" --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --experts 4 --experts-used 2 --vocab 512 \
  >/dev/null || fail "grok new"

echo "== grok run --json-schema / --grammar"
cat >"$T/s.json" <<'JSON'
{"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 99}, "w": {"enum": ["a", "b"]}}, "required": ["n", "w"]}
JSON
out=$("$GROK" run -m "$model" -p "x" -n 200 --json-schema "$T/s.json" --no-stats) || fail "run --json-schema"
echo "  $out"
python3 -c 'import json,sys; v=json.loads(sys.argv[1]); assert set(v)=={"n","w"} and 1<=v["n"]<=99 and v["w"] in ("a","b")' "$out" \
  || fail "run --json-schema output: $out"
printf 'root ::= "<" [a-c]{2,4} ">"\n' >"$T/g.gbnf"
out=$("$GROK" run -m "$model" -p "x" -n 50 --grammar "$T/g.gbnf" --no-stats) || fail "run --grammar"
[[ $out =~ ^\<[a-c]{2,4}\>$ ]] || fail "run --grammar output: $out"
printf 'root ::= "a" |\n  "b" $\n' >"$T/bad.gbnf"
if "$GROK" run -m "$model" -p "x" --grammar "$T/bad.gbnf" 2>"$T/err"; then fail "a bad grammar was accepted"; fi
grep -q "bad.gbnf: grammar: line 2, column 7: expecting newline" "$T/err" || fail "bad grammar message: $(cat "$T/err")"
echo '{"type": "integer", "multipleOf": 3}' >"$T/bad.json"
if "$GROK" run -m "$model" -p "x" --json-schema "$T/bad.json" 2>"$T/err"; then fail "a bad schema was accepted"; fi
grep -q "'multipleOf' is not supported" "$T/err" || fail "bad schema message: $(cat "$T/err")"
out=$(printf 'hi\nagain\n' | "$GROK" chat -m "$model" --json-schema "$T/s.json" -n 200 2>/dev/null) || fail "chat --json-schema"
[ "$(echo "$out" | wc -l)" = 2 ] || fail "chat --json-schema: two replies expected: $out"
echo "$out" | while read -r line; do
  python3 -c 'import json,sys; v=json.loads(sys.argv[1]); assert set(v)=={"n","w"}' "$line" || exit 1
done || fail "chat --json-schema replies: $out"

echo "== grok serve with the openai package"
pids=()
serve_start srv -m "$model" --parallel 4 --ctx 1024 -t 2
node "$NPM_DIR/structured.mjs" "$URL" || fail "structured.mjs"
kill -0 "$PID" 2>/dev/null || fail "the server died"
kill -TERM "$PID"
wait "$PID" || fail "unclean exit"
PID=
echo "PASS test_structured ($(($(date +%s) - t0)) s)"
