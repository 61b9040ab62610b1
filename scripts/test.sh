#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: Debian packages, BuildKit, npm packages, build, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
# BuildKit from .tools/buildkit (see install-deps.sh) wins over whatever PATH has.
if [ -x .tools/buildkit/buildkitd ]; then export PATH="$PWD/.tools/buildkit:$PATH"; fi
npm ci --no-audit --no-fund
npm test
