#!/usr/bin/env bash
# Smoke-test the PyInstaller bundle (make dist): version, `db upgrade` on a temp SQLite file, `serve`
# answering /healthz and stopping on SIGTERM, and the console starting offscreen.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-dist/watchkeeper/watchkeeper}
[ -x "$BIN" ] || { echo "no bundle at $BIN: run make dist first" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
export XDG_CONFIG_HOME="$TMP/config" XDG_DATA_HOME="$TMP/data"
export PYTHON_KEYRING_BACKEND=keyring.backends.null.Keyring
DB="sqlite:///$TMP/watchkeeper.db"

echo "== version";           "$BIN" --version
"$BIN" --version | grep -q "(built " || { echo "--version of a bundle must say when it was built" >&2; exit 1; }
echo "== db upgrade";        "$BIN" db upgrade --db "$DB"
echo "== db current";        "$BIN" db current --db "$DB"

echo "== serve"
WATCHKEEPER_HTTP_PORT=0 "$BIN" serve --db "$DB" >"$TMP/serve.log" 2>&1 &
PID=$!
URL=""
for _ in $(seq 1 100); do
    URL=$(grep -oE 'listening on http://[0-9.]+:[0-9]+' "$TMP/serve.log" | head -1 | sed 's/listening on //') || true
    [ -n "$URL" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$TMP/serve.log"; echo "serve exited" >&2; exit 1; }
    sleep 0.2
done
[ -n "$URL" ] || { cat "$TMP/serve.log"; echo "serve did not listen" >&2; exit 1; }
for _ in $(seq 1 50); do
    if python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)" "$URL/healthz" 2>/dev/null; then
        break
    fi
    sleep 0.2
done
python3 -c "import sys,urllib.request,json; print(json.load(urllib.request.urlopen(sys.argv[1], timeout=5))['status'])" "$URL/healthz"
kill -TERM "$PID"
wait "$PID"; CODE=$?
PID=""
[ "$CODE" -eq 0 ] || { cat "$TMP/serve.log"; echo "serve exit code $CODE after SIGTERM" >&2; exit 1; }
echo "serve stopped with exit 0"

echo "== console (offscreen)"
QT_QPA_PLATFORM=offscreen "$BIN" --smoke-test --db "$DB"
echo "== bundle size: $(du -sh "$(dirname "$BIN")" | cut -f1)"
echo "smoke test passed"
