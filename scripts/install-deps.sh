#!/usr/bin/env bash
# Installs the Debian packages Kiln needs. Usage: install-deps.sh [run|test]
#   run:  what `kiln serve` needs (e2fsprogs for disks, zstd for zstd layers)
#   test: plus the real clients and tools the test suite drives
set -euo pipefail
profile=${1:-test}
packages=(e2fsprogs zstd)
if [ "$profile" = test ]; then
  # postgresql: the tests start throwaway clusters of it (test/helpers/postgres.ts)
  # podman, docker.io, containerd: the clients whose messages test/refused-push.test.ts reads
  packages+=(skopeo buildah umoci attr postgresql podman docker.io containerd)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
