#!/usr/bin/env bash
# The backend alone, no containers: a virtualenv with just the app in .venv-app, then
# `livelog serve all` (Socket.IO on 127.0.0.1:7000, API on 127.0.0.1:8000) in this terminal.
# Configuration: environment variables or ./.env (app/README.md). Ctrl-C stops both services.
# Credentials: unless the environment sets them, an API key and a viewer token secret are made once and kept
# in .local/run-backend/ (mode 0600); the script prints the key's file and a viewer link with a fresh token.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-app
if ! python3 -c 'import ensurepip' 2>/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "python3 cannot make virtualenvs: apt-get install python3-venv (as root)" >&2; exit 1; }
  echo "### run-backend: apt-get install python3-venv"
  apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install python3-venv </dev/null
fi
stamp=$VENV/.installed-from
want=$(sha256sum app/pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "### run-backend: installing the backend into $VENV"
  python3 -m venv "$VENV"
  # Debian 12's venv pip (23.0) ignores extras spelled with '_' (PEP 685)
  "$VENV/bin/pip" install -q --disable-pip-version-check 'pip>=24.1'
  "$VENV/bin/pip" install -q --disable-pip-version-check -e ./app
  echo "$want" > "$stamp"
fi
STATE=.local/run-backend
mkdir -p "$STATE" && chmod 0700 "$STATE"
for secret in api-key viewer-token-secret; do
  [ -s "$STATE/$secret" ] || (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$STATE/$secret")
done
export LIVELOG_API_KEYS=${LIVELOG_API_KEYS:-$(cat "$STATE/api-key")}
export LIVELOG_VIEWER_TOKEN_SECRET=${LIVELOG_VIEWER_TOKEN_SECRET:-$(cat "$STATE/viewer-token-secret")}
token=$("$VENV/bin/livelog" token --runs '*' --ttl 3600)
echo "### run-backend: the API key is in $STATE/api-key; start a run:"
echo "    curl -H \"Authorization: Bearer \$(cat $STATE/api-key)\" -X POST http://127.0.0.1:8000/api/runs"
echo "### run-backend: watch every run for an hour: http://127.0.0.1:7000/#token=$token"
exec "$VENV/bin/livelog" serve all
