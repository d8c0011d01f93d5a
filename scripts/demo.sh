#!/usr/bin/env bash
# The README's main job, on the embedded defaults (a local repository directory, nothing else to
# start): a daemon hosts a 1 GiB disk; we write to it over NBD, back it up, write more, back it
# up incrementally, restore both backups and check each against the disk as it was. Work files
# live in ./demo, or $FLEECE_DEMO_DIR (recreated on each run).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/src/cli/fleece.cjs ] || npm run build
DEMO="${FLEECE_DEMO_DIR:-$PWD/demo}"
if [ -d "$DEMO" ] && [ -n "$(ls -A "$DEMO")" ] && [ ! -f "$DEMO/.fleece-demo" ]; then
  echo "demo: $DEMO exists and was not made by the demo: refusing to clear it" >&2
  exit 2
fi
rm -rf "$DEMO" && mkdir -p "$DEMO" && touch "$DEMO/.fleece-demo"
export FLEECE_STATE="$DEMO/state" FLEECE_REPO="$DEMO/repo"
SOCK="$FLEECE_STATE/nbd.sock"
URI="nbd+unix:///vm?socket=$SOCK"
CLI="$PWD/dist/src/cli/fleece.cjs"
fleece() { node "$CLI" "$@"; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }
say() { printf 'demo: %s\n' "$*"; }
# Backs up the disk, says what it read and stored, and leaves the backup id in LAST_ID.
backup_step() {
  local t json
  t=$(now)
  json=$(fleece backup disk:vm --json 2> >(grep -v '^{"event"' >&2))
  LAST_ID=$(node -e 'console.log(JSON.parse(process.argv[1]).id)' "$json")
  say "$1 backup ${LAST_ID:0:12} in $(took "$t"): $(node -e '
    const m = JSON.parse(process.argv[1]); const mib = (n) => (n / 2 ** 20).toFixed(1);
    console.log(`read ${mib(m.bytesRead)} MiB, stored ${mib(m.counts.newBytes)} MiB in ${m.counts.newChunks} new chunks, ` +
      (m.parent ? `only the dirty clusters (parent ${m.parent.slice(0, 12)})` : `${m.counts.zeroSlots} zero chunks skipped`));' "$json")"
}

node "$CLI" daemon --state "$FLEECE_STATE" >"$DEMO/daemon.log" 2>&1 &   # not the shell function: $! must be node itself
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true; wait $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$FLEECE_STATE/api.sock" ] && break; sleep 0.1; done
[ -S "$FLEECE_STATE/api.sock" ] || { cat "$DEMO/daemon.log" >&2; exit 1; }
say "daemon running (state in $FLEECE_STATE, NBD socket $SOCK)"

fleece init >/dev/null
say "repository initialised in $FLEECE_REPO (64 KiB chunks, zstd)"
fleece disk create vm --size 1G >/dev/null
say "disk vm created: 1 GiB, sparse"

head -c 96M /dev/urandom >"$DEMO/seed.bin"
t=$(now)
nbdcopy "$DEMO/seed.bin" "$URI"
qemu-io -f raw -c 'write -P 0x5a 512M 64M' -c 'write -z 600M 8M' "$URI" >/dev/null
say "wrote 96 MiB of random data at 0 and a 64 MiB pattern at 512 MiB over NBD in $(took "$t")"
nbdcopy "$URI" "$DEMO/expected-1.img"

backup_step full
FULL_ID=$LAST_ID

t=$(now)
CMDS=()
for i in $(seq 0 99); do CMDS+=(-c "write -P $((i % 250 + 1)) $((i * 9973 * 4096 % (1024 * 1024 * 1024 - 4096) / 4096 * 4096)) 4k"); done
qemu-io -f raw "${CMDS[@]}" "$URI" >/dev/null
say "wrote 100 scattered 4 KiB blocks over NBD in $(took "$t")"
nbdcopy "$URI" "$DEMO/expected-2.img"

backup_step incremental
INCR_ID=$LAST_ID

for n in 1 2; do
  id=$([ "$n" = 1 ] && echo "$FULL_ID" || echo "$INCR_ID")
  t=$(now)
  fleece restore "$id" "$DEMO/restored-$n.img" >/dev/null
  if cmp --quiet "$DEMO/restored-$n.img" "$DEMO/expected-$n.img"; then
    say "restored backup ${id:0:12} in $(took "$t"): identical to the disk at backup time ($(sha256sum "$DEMO/restored-$n.img" | cut -c1-16)…)"
  else
    say "restored backup ${id:0:12} DIFFERS from the disk at backup time" >&2
    exit 1
  fi
done

say "repository $FLEECE_REPO:"
fleece stats | sed 's/^/  /'
say "done; try: fleece list --repo $FLEECE_REPO, or fleece serve-backup $INCR_ID --repo $FLEECE_REPO"
