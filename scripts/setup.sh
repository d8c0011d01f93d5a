#!/usr/bin/env bash
# Installs everything fleece and its tests need on a Debian machine: the real NBD/QEMU clients
# the tests drive, restic and borg for the benchmarks, then the npm packages (native modules
# are built from source against Node's own headers), then compiles the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  qemu-utils qemu-system-common libnbd-bin python3-libnbd nbdkit fio
  restic borgbackup
  util-linux-extra  # fincore: tests check what is left in the page cache
  ceph-mon ceph-osd ceph-mgr radosgw ceph-common
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export npm_config_nodedir=/usr npm_config_build_from_source=true
# `npm install` (not `npm ci`): it installs the versions package-lock.json pins, but unlike `npm ci`
# it does not insist that every other platform's optional prebuilt package (e.g. BLAKE3's
# darwin/win32 builds) be resolvable from the registry this machine reaches.
npm install --no-audit --no-fund
npm run build
