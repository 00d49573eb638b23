#!/usr/bin/env bash
# Property-based tests of both services from their own OpenAPI (Schemathesis): a throwaway Socket.IO server and
# API on free loopback ports, the API with a key, the Socket.IO server's broadcast endpoint with its token; every
# check, a bounded number of examples, a fixed seed. Fails on any server error, schema violation or traceback.
#   scripts/fuzz.sh [extra `st run` options, e.g. --seed 8 or -n 100]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$ROOT/.venv/bin:$PATH
work=$(mktemp -d)
pids=()
# the servers' own exit status (143 after the kill) is not this script's
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
api_port=$(free_port)
socketio_port=$(free_port)
api_key=fuzz-key-$(secret)
broadcast_token=fuzz-broadcast-$(secret)
serve() {  # COMPONENT: without the caller's livelog variables, with the throwaway ones
  (cd "$work" && exec env $(env | sed -n 's/^\(LIVELOG_[A-Z_]*\|SOCKETIO_[A-Z_]*\|REST_API_[A-Z_]*\)=.*/-u \1/p') \
     REST_API_PORT="$api_port" SOCKETIO_PORT="$socketio_port" LIVELOG_DATA_DIR="$work/data-$1" \
     LIVELOG_API_KEYS="$api_key" LIVELOG_VIEWER_TOKEN_SECRET="fuzz-secret-$(secret)" \
     LIVELOG_BROADCAST_TOKEN="$broadcast_token" livelog serve "$1" > "$work/$1.log" 2>&1) &
  pids+=($!)
}
serve socketio
serve api
for port in "$socketio_port" "$api_port"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
# run from the throwaway directory: Schemathesis and Hypothesis write their caches where they run;
# scripts/schemathesis.toml sends LIVELOG_FUZZ_KEY as the bearer credential
status=0
fuzz() {  # SERVICE PORT CREDENTIAL
  echo "### fuzz: the $1's OpenAPI"
  (cd "$work" && LIVELOG_FUZZ_KEY=$3 st --config-file "$ROOT/scripts/schemathesis.toml" \
     run "http://127.0.0.1:$2/openapi.json" --seed 7 --no-color "${@:4}") || status=1
}
fuzz "REST API" "$api_port" "$api_key" "$@"
fuzz "Socket.IO server" "$socketio_port" "$broadcast_token" "$@"
for component in api socketio; do
  if grep -q Traceback "$work/$component.log"; then
    echo "fuzz: the $component service logged a traceback:" >&2
    grep -B2 -A12 Traceback "$work/$component.log" >&2
    status=1
  fi
done
exit $status
