#!/usr/bin/env bash
# Installs the Debian packages Kiln needs. Usage: install-deps.sh [run|test]
#   run:  what `kiln serve` needs (zstd for zstd layers; Kiln writes ext4 disks itself)
#   test: plus the real clients and tools the test suite drives (e2fsprogs checks and reads the disks)
set -euo pipefail
profile=${1:-test}
packages=(zstd)
if [ "$profile" = test ]; then
  packages+=(e2fsprogs skopeo buildah umoci attr)
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
