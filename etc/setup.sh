#!/bin/sh
# Idempotent setup of a Debian machine for litefs: system packages, npm
# dependencies, the native addon and the TypeScript build.
set -e
cd "$(dirname "$0")/.."

need=""
command -v fusermount3 >/dev/null 2>&1 || need="$need fuse3"
pkg-config --exists fuse3 2>/dev/null || need="$need libfuse3-dev pkg-config"
# liblz4 decompresses snapshot chunks into reused memory (native/lz4.c).
pkg-config --exists liblz4 2>/dev/null || need="$need liblz4-dev"
command -v sqlite3 >/dev/null 2>&1 || need="$need sqlite3"
command -v python3 >/dev/null 2>&1 || need="$need python3"
# The tests read what is in the page cache with fincore.
command -v fincore >/dev/null 2>&1 || need="$need util-linux-extra"
command -v make >/dev/null 2>&1 || need="$need build-essential"
command -v g++ >/dev/null 2>&1 || need="$need g++"
# The etcd lease is tested against a real etcd server.
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
command -v etcdctl >/dev/null 2>&1 || need="$need etcd-client"
if [ -n "$need" ]; then
  echo "setup: installing$need"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
[ -e /dev/fuse ] || echo "setup: warning: /dev/fuse is missing; mounts will fail" >&2

# Native modules (ours and better-sqlite3's) build against the running
# Node's own headers; no header download is possible here.
npm_config_nodedir=$(node -p "require('path').resolve(process.execPath, '../..')")
export npm_config_nodedir
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
[ -f build/Release/litefs_fuse.node ] && [ -f build/Release/litefs_lz4.node ] || sh etc/build-native.sh
npx tsc -p .
# The example config mounts under the repository.
mkdir -p .litefs/mnt .litefs/data .litefs/node1/mnt .litefs/node2/mnt .litefs/node3/mnt
