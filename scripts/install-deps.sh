#!/usr/bin/env bash
# Installs what Kiln needs. Usage: install-deps.sh [run|test]
#   run:  what `kiln serve` needs: zstd for zstd layers (Kiln writes ext4 disks itself);
#         bubblewrap for the bake sandbox (src/jobs/sandbox/; util-linux gives prlimit,
#         setpriv, chrt, ionice); for
#         builds runc, the CNI plugins and iptables (RUN steps get a network of
#         their own, closed to the host), and BuildKit (below)
#   test: plus the real clients and tools the test suite drives, and the
#         servers it starts: Ceph's RADOS Gateway for S3 (ceph-mon ceph-osd
#         radosgw) and a private Docker daemon (docker.io)
#
# BuildKit is not packaged for Debian 12. When ../shared/tools/buildkit/ holds
# the release tarball, buildkitd and buildctl are extracted into .tools/buildkit/
# in the checkout (scripts/test.sh and scripts/run.sh put that on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-test}
packages=(zstd bubblewrap runc containernetworking-plugins iptables)
if [ "$profile" = test ]; then
  # e2fsprogs: e2fsck and debugfs check and read the baked disks;
  # postgresql: the tests start throwaway clusters of it (test/helpers/postgres.ts);
  # ceph-mon ceph-osd radosgw: a throwaway S3 server (test/helpers/rgw.ts); docker.io, containerd: a private dockerd (and its containerd for ctr)
  packages+=(e2fsprogs skopeo buildah umoci attr postgresql podman docker.io containerd ceph-mon ceph-osd radosgw)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
sudo_cmd=""
[ "$(id -u)" = 0 ] || sudo_cmd=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 update -qq
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

buildkit_version=v0.20.2
tarball=../shared/tools/buildkit/buildkit-${buildkit_version}-linux-amd64.tar.gz
tools=.tools/buildkit
if [ -f "$tarball" ] && ! "$tools/buildkitd" --version 2>/dev/null | grep -q " ${buildkit_version} "; then
  echo "extracting BuildKit ${buildkit_version} into ${tools}" >&2
  rm -rf "$tools" && mkdir -p "$tools"
  tar -xzf "$tarball" -C "$tools"
  # The tarball holds the binaries at its top level or under bin/, depending on who made it.
  if [ -d "$tools/bin" ]; then mv "$tools"/bin/* "$tools"/ && rmdir "$tools/bin"; fi
fi
