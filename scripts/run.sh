#!/usr/bin/env bash
# Runs Kiln on its embedded defaults (127.0.0.1:5000, ./kiln-data, SQLite + filesystem),
# installing what it needs first. Extra arguments go to `kiln serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
if [ -x .tools/buildkit/buildkitd ] && [ -z "${KILN_BUILDKIT_DIR:-}" ]; then export KILN_BUILDKIT_DIR="$PWD/.tools/buildkit"; fi
if [ ! -f dist/src/cli/main.js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
exec node bin/kiln.js serve "$@"
