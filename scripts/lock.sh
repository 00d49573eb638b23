#!/usr/bin/env bash
# The app's lock file, app/requirements.lock: every dependency pinned with its hashes (pip-tools), what the
# role installs on hosts from a wheelhouse. `scripts/lock.sh` brings it up to date with app/pyproject.toml
# (`make lock`); `scripts/lock.sh --check` fails when it has drifted (`make lint`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH CUSTOM_COMPILE_COMMAND="make lock"
compile() {  # OUTPUT: resolve app/pyproject.toml into OUTPUT, keeping the pins OUTPUT has where they still fit
  pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
    --output-file "$1" app/pyproject.toml
}
if [ "${1:-}" != --check ]; then
  compile app/requirements.lock
  exit
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp app/requirements.lock "$work/requirements.lock"
compile "$work/requirements.lock"
if ! diff -u app/requirements.lock "$work/requirements.lock"; then
  echo "lock: app/requirements.lock does not match app/pyproject.toml: run make lock" >&2
  exit 1
fi
echo "lock: app/requirements.lock matches app/pyproject.toml"
