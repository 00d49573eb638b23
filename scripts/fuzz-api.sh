#!/usr/bin/env bash
# Property-based tests of the REST API from its own OpenAPI (Schemathesis), with an API key: a throwaway
# API on a free loopback port (no Socket.IO server: its broadcaster keeps retrying, which is fine), every
# check, a bounded number of examples, a fixed seed. Fails on any server error or schema violation.
#   scripts/fuzz-api.sh [extra `st run` options, e.g. --seed 8 or -n 100]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$ROOT/.venv/bin:$PATH
work=$(mktemp -d)
# the server's own exit status (143 after the kill) is not this script's
cleanup() { if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
export LIVELOG_FUZZ_KEY=fuzz-key-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
(cd "$work" && exec env $(env | sed -n 's/^\(LIVELOG_[A-Z_]*\|SOCKETIO_[A-Z_]*\|REST_API_[A-Z_]*\)=.*/-u \1/p') \
   REST_API_PORT="$port" SOCKETIO_PORT="$(free_port)" LIVELOG_DATA_DIR="$work/data" \
   LIVELOG_API_KEYS="$LIVELOG_FUZZ_KEY" LIVELOG_VIEWER_TOKEN_SECRET="fuzz-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')" \
   livelog serve api > "$work/api.log" 2>&1) &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
# run from the throwaway directory: Schemathesis and Hypothesis write their caches where they run
status=0
(cd "$work" && st --config-file "$ROOT/scripts/schemathesis.toml" run "http://127.0.0.1:$port/openapi.json" \
   --seed 7 --no-color "$@") || status=$?
if grep -q Traceback "$work/api.log"; then
  echo "fuzz: the API logged a traceback:" >&2; grep -B2 -A12 Traceback "$work/api.log" >&2; status=1
fi
exit $status
