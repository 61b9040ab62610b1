#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: Debian packages, npm packages, build, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
npm ci --no-audit --no-fund
npm test
