#!/usr/bin/env bash
# The README's main job: serve a sparse 1 GiB disk image over NBD with `fleece serve`, printing
# the URI to connect to. Creates ./demo/disk.img on first run; stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/src/cli/main.js ] || npm run build
mkdir -p demo
LISTEN="${FLEECE_DEMO_LISTEN:-127.0.0.1:10809}"
if [ ! -f demo/disk.img ]; then
  echo "demo: creating demo/disk.img (sparse, 1 GiB)" >&2
  CREATE=(--create 1G)
else
  CREATE=()
fi

URI="nbd://${LISTEN}/disk"
cat >&2 <<MSG
demo: serving demo/disk.img over NBD; try, in another terminal:
  nbdinfo ${URI}
  qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M' ${URI}
  nbdinfo --map ${URI}
demo: stop with Ctrl-C
MSG
exec node dist/src/cli/main.js serve demo/disk.img "${CREATE[@]}" --listen "$LISTEN"
