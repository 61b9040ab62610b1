#!/usr/bin/env bash
# Installs the Debian packages Kiln needs. Usage: install-deps.sh [run|test]
#   run:  what `kiln serve` needs (e2fsprogs for disks, zstd for zstd layers)
#   test: plus the real clients and tools the test suite drives, and the
#         servers it starts: Ceph's RADOS Gateway for S3 (ceph-mon ceph-osd
#         radosgw) and a private Docker daemon (docker.io)
set -euo pipefail
profile=${1:-test}
packages=(e2fsprogs zstd)
if [ "$profile" = test ]; then
  # postgresql: the tests start throwaway clusters of it (test/helpers/postgres.ts);
  # ceph-mon ceph-osd radosgw: a throwaway S3 server (test/helpers/rgw.ts); docker.io, containerd: a private dockerd (and its containerd for ctr)
  packages+=(skopeo buildah umoci attr postgresql podman docker.io containerd ceph-mon ceph-osd radosgw)
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
  $sudo_cmd apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
fi
