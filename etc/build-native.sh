#!/bin/sh
# Builds the libfuse3 addon (native/) with node-gyp against the headers of
# the Node.js that runs us: nothing is downloaded.
set -e
cd "$(dirname "$0")/.."
nodedir=$(node -p "require('path').resolve(process.execPath, '../..')")
if [ ! -f "$nodedir/include/node/node_api.h" ]; then
  echo "litefs: Node.js headers not found under $nodedir/include/node; install them (Debian: nodejs-dev / libnode-dev)" >&2
  exit 1
fi
if ! pkg-config --exists fuse3; then
  echo "litefs: libfuse3 development files are missing; run etc/setup.sh (apt-get install libfuse3-dev pkg-config)" >&2
  exit 1
fi
if ! pkg-config --exists liblz4; then
  echo "litefs: liblz4 development files are missing; run etc/setup.sh (apt-get install liblz4-dev)" >&2
  exit 1
fi
# npm puts its bundled node-gyp on PATH for install scripts; outside npm,
# find that same copy.
if command -v node-gyp >/dev/null 2>&1; then
  exec node-gyp rebuild --nodedir="$nodedir"
fi
gyp="$(npm root -g 2>/dev/null)/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || { echo "litefs: node-gyp not found (it ships with npm)" >&2; exit 1; }
exec node "$gyp" rebuild --nodedir="$nodedir"
