#!/usr/bin/env bash
# A throwaway single-node Ceph cluster (monitor, memstore OSD, manager, radosgw) on 127.0.0.1,
# for the S3 tests and benchmarks. No systemd, no cephx; everything lives in DIR and dies with
# `rgw.sh down DIR` (or after LIFE seconds at the latest).
#
#   rgw.sh up DIR [PORT]   start; prints the endpoint, access key and secret key as env lines
#   rgw.sh down DIR        stop every daemon started from DIR
set -euo pipefail

ACCESS_KEY=FLEECETESTACCESS
SECRET_KEY=fleece-test-secret-key
LIFE=${LIFE:-3600}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then echo "rgw.sh: $what did not come up within ${limit}s (logs in $DIR/log)" >&2; exit 1; fi
    sleep 0.5
  done
}

start_daemon() { # start_daemon NAME COMMAND...
  local name=$1; shift
  (timeout "$LIFE" "$@" -f >"$DIR/log/$name.out" 2>&1 & echo $! >"$DIR/$name.pid")
}

up() {
  rm -rf "$DIR"
  mkdir -p "$DIR"/{mon,osd,mgr,run,log,rgw}
  local fsid; fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$DIR/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:${MON_PORT:-3300},v1:127.0.0.1:${MON_V1_PORT:-6789}]
mon_initial_members = a
public_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_ipv6 = false
ms_mon_client_mode = crc
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
mon_allow_pool_size_one = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 1
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
pid_file = $DIR/run/\$name.pid
mon_data = $DIR/mon/\$cluster-\$id
osd_data = $DIR/osd/\$cluster-\$id
mgr_data = $DIR/mgr/\$cluster-\$id
keyring = $DIR/keyring
[osd]
osd_objectstore = memstore
memstore_device_bytes = ${MEMSTORE_BYTES:-4294967296}
osd_memory_target = 939524096
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$PORT
rgw_data = $DIR/rgw
CONF
  touch "$DIR/keyring"
  local conf=(-c "$DIR/ceph.conf")
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:${MON_PORT:-3300},v1:127.0.0.1:${MON_V1_PORT:-6789}]" "$DIR/monmap" >/dev/null
  ceph-mon "${conf[@]}" --mkfs -i a --monmap "$DIR/monmap"
  start_daemon mon ceph-mon "${conf[@]}" -i a
  wait_for 60 "ceph-mon" timeout 5 ceph "${conf[@]}" mon stat
  local uuid id; uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(timeout 30 ceph "${conf[@]}" osd new "$uuid")
  mkdir -p "$DIR/osd/ceph-$id"
  ceph-osd "${conf[@]}" -i "$id" --mkfs --osd-uuid "$uuid" >"$DIR/log/osd-mkfs.out" 2>&1
  start_daemon osd ceph-osd "${conf[@]}" -i "$id"
  mkdir -p "$DIR/mgr/ceph-x"
  start_daemon mgr ceph-mgr "${conf[@]}" -i x
  wait_for 60 "ceph-osd" sh -c "timeout 5 ceph -c '$DIR/ceph.conf' osd stat | grep -q '1 up'"
  start_daemon rgw radosgw "${conf[@]}" -n client.rgw.a
  wait_for 90 "radosgw" curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/"
  timeout 60 radosgw-admin "${conf[@]}" user create --uid=fleece --display-name=fleece \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  echo "AWS_ENDPOINT_URL=http://127.0.0.1:$PORT"
  echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
  echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
  echo "AWS_REGION=us-east-1"
}

down() {
  for name in rgw mgr osd mon; do
    [ -f "$DIR/$name.pid" ] && pkill -P "$(cat "$DIR/$name.pid")" 2>/dev/null || true
    [ -f "$DIR/$name.pid" ] && kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
  done
  sleep 1
  echo "rgw.sh: stopped"
}

cmd=${1:-}; DIR=${2:-}; PORT=${3:-7480}
[ -n "$DIR" ] || { echo "usage: rgw.sh up|down DIR [PORT]" >&2; exit 2; }
DIR=$(realpath -m "$DIR")
case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: rgw.sh up|down DIR [PORT]" >&2; exit 2 ;;
esac
