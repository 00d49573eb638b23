#!/usr/bin/env bash
# The backend alone, no containers: a virtualenv with just the app in .venv-app, then
# `livelog serve all` (Socket.IO on 127.0.0.1:7000, API on 127.0.0.1:8000) in this terminal.
# Configuration: environment variables or ./.env (app/README.md). Ctrl-C stops both services.
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
echo "### run-backend: open http://127.0.0.1:7000/ ; start a run: curl -X POST http://127.0.0.1:8000/api/runs"
exec "$VENV/bin/livelog" serve all
