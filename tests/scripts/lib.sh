# lib.sh - what the server end-to-end scripts share (source it; bash):
#   serve_start NAME ARGS...  starts `$GROK serve --port 0 ARGS...` in the
#       background, its stdout/stderr in $T/NAME.out / $T/NAME.err; waits
#       for "listening on"; sets PID and URL and appends PID to the
#       script's `pids` array (its clean-up kills them). A server that
#       exits or does not print a loopback address within 10 s ends the
#       script: "FAIL: NAME did not start" with the end of its stderr.
#   npm_packages  the npm packages of tests/server installed once per lock
#       file into NPM_DIR ($GROK_NPM_DIR or ~/.cache/grok-test-npm), one
#       installer at a time, and tests/server/*.mjs copied there.
#   check 'COND' MESSAGE  evaluates COND: counts a pass, or prints "FAIL:
#       MESSAGE" and counts a failure (the script's `pass` and `fail`).
#   stop_servers  kills every server in `pids` (the scripts' EXIT trap).
# Needs GROK and T set; GROK_SRC defaults to the checkout holding this file.

GROK_SRC=${GROK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }
stop_servers() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }

serve_start() {
  local name=$1
  shift
  : >"$T/$name.out" # not an earlier run's, and there before the background shell opens it
  "$GROK" serve --port 0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
  PID=$!
  pids+=("$PID")
  URL=
  for _ in $(seq 100); do
    URL=$(sed -n 's/^grok serve: listening on \(http:[^ ]*\).*/\1/p' "$T/$name.out")
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  case $URL in
    http://127.0.0.1:*) ;;
    *) echo "FAIL: $name did not start (address '$URL'): $(tail -20 "$T/$name.err")"; exit 1 ;;
  esac
}

npm_packages() {
  NPM_DIR=${GROK_NPM_DIR:-$HOME/.cache/grok-test-npm}
  mkdir -p "$NPM_DIR"
  exec 9>"$NPM_DIR/.lock"
  flock 9
  if ! cmp -s "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/.installed-lock" ||
    [ ! -d "$NPM_DIR/node_modules/openai" ] || [ ! -d "$NPM_DIR/node_modules/ajv" ]; then
    cp "$GROK_SRC/tests/server/package.json" "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error) || { echo "FAIL: npm ci in $NPM_DIR"; exit 1; }
    cp "$GROK_SRC/tests/server/package-lock.json" "$NPM_DIR/.installed-lock"
  fi
  cp "$GROK_SRC"/tests/server/*.mjs "$NPM_DIR/"
  flock -u 9
}
