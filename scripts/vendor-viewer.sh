#!/usr/bin/env bash
# The viewer's Socket.IO client, from npm: installs app/viewer/package-lock.json exactly (versions and integrity
# hashes checked by `npm ci`, no install scripts run) and copies the client's ES module build into the Python
# package, where it is committed, so the wheel ships it and hosts need no node.
#   scripts/vendor-viewer.sh           update the committed copy
#   scripts/vendor-viewer.sh --check   fail if the committed copy differs from the locked package (skipped, saying
#                                      so, where npm is missing: hosts and minimal machines)
set -euo pipefail
cd "$(dirname "$0")/../app/viewer"
BUILD=node_modules/socket.io-client/dist/socket.io.esm.min.js
COPY=../src/livelog/static/viewer/socket.io.esm.min.js

if ! command -v npm >/dev/null; then
  if [ "${1:-}" = --check ]; then
    echo "vendor-viewer: npm is missing, the committed Socket.IO client is not checked (apt install npm)"
    exit 0
  fi
  echo "vendor-viewer: npm is missing (apt install npm)" >&2
  exit 1
fi
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
if [ "${1:-}" = --check ]; then
  cmp -s "$BUILD" "$COPY" || { echo "vendor-viewer: $COPY differs from the locked socket.io-client: run scripts/vendor-viewer.sh" >&2; exit 1; }
  echo "vendor-viewer: the committed Socket.IO client is the locked one"
else
  cp "$BUILD" "$COPY"
  echo "vendor-viewer: copied $(node -p 'require("socket.io-client/package.json").version') to $COPY"
fi
