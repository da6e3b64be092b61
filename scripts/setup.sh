#!/usr/bin/env bash
# Sets up a fresh Debian machine (or a clone on any machine with Node.js) for development and tests:
# checks the toolchain, then installs the npm dependencies from the lockfile. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node="20.19.0"
if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js >= $need_node is required (https://nodejs.org or your distribution's nodejs package)" >&2
  exit 1
fi
have_node="$(node -p 'process.versions.node')"
if [ "$(printf '%s\n%s\n' "$need_node" "$have_node" | sort -V | head -n1)" != "$need_node" ]; then
  echo "setup: Node.js $have_node is too old; agent-memory needs >= $need_node" >&2
  exit 1
fi

echo "setup: installing npm dependencies (npm ci)"
npm ci --no-audit --no-fund
