#!/usr/bin/env bash
# A single-node Ceph cluster on loopback, for tests and benchmarks against a real distributed
# object store: one monitor, one OSD (memstore: its objects live in memory), one RADOS Gateway
# (S3 API), with authentication between the daemons off and everything under one directory.
#
#   bash scripts/ceph-local.sh start DIR   installs the Debian packages when missing, starts the
#                                          daemons (pid files in DIR/run), creates an S3 user and
#                                          a bucket, waits until the gateway answers, and writes
#                                          DIR/s3.env (S3_ENDPOINT, S3_REGION, S3_BUCKET,
#                                          S3_ACCESS_KEY, S3_SECRET_FILE, and S3_ACCESS_LOG: the
#                                          gateway's log, one "beast:" line per request)
#   bash scripts/ceph-local.sh stop DIR    stops the daemons it started there (by pid), waits
#                                          for them, and removes DIR
#
# Environment: CEPH_MEMSTORE_BYTES (the OSD's memory store, at most; default 8 GiB), CEPH_START_TIMEOUT
# (seconds, default 120). Only 127.0.0.1 is used; ports are picked free at start.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

log() { echo "ceph-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

stop_pids() {
  local pidfile pid
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] || continue
    # Only a process that is still the daemon started here (its command line names our conf).
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/ceph.conf"; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] || continue
    for _ in $(seq 100); do
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/ceph.conf" || break
      sleep 0.1
    done
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/ceph.conf"; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
}

if [ "$cmd" = "stop" ]; then
  [ -f "$dir/ceph.conf" ] || die "$dir holds no cluster started by this script"
  stop_pids
  rm -rf "$dir"
  log "stopped"
  exit 0
fi
[ "$cmd" = "start" ] || die "unknown command '$cmd' (start or stop)"

# The packages, when missing.
need=()
for p in ceph-mon ceph-osd radosgw ceph-common python3-boto3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$dir"
dir="$(realpath "$dir")"
[ -e "$dir/ceph.conf" ] && die "$dir already holds a cluster (stop it first)"
mkdir -p "$dir/run" "$dir/log" "$dir/mon.a" "$dir/osd.0"
started=""
trap '[ -n "$started" ] || { stop_pids; }' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mon_port="$(free_port)"
rgw_port="$(free_port)"
fsid="$(python3 -c 'import uuid; print(uuid.uuid4())')"
timeout="${CEPH_START_TIMEOUT:-120}"

cat >"$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/\$name
osd data = $dir/\$name
keyring = $dir/keyring
osd objectstore = memstore
memstore device bytes = ${CEPH_MEMSTORE_BYTES:-8589934592}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd max object name len = 460
osd max object namespace len = 64

[client.rgw.local]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = 127.0.0.1
# Deleted objects and aborted uploads give their memory back within seconds, not hours.
rgw gc obj min wait = 0
rgw gc processor period = 10
rgw gc processor max time = 10
CONF

conf=(-c "$dir/ceph.conf")
t0=$(date +%s)
monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
ceph-mon "${conf[@]}" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mkfs-mon.log" 2>&1 || { cat "$dir/log/mkfs-mon.log" >&2; die "ceph-mon --mkfs"; }
ceph-mon "${conf[@]}" -i a 2>>"$dir/log/start.log" || die "ceph-mon did not start (see $dir/log/mon.a.log)"
osd_uuid="$(python3 -c 'import uuid; print(uuid.uuid4())')"
osd_id="$(timeout 60 ceph "${conf[@]}" osd new "$osd_uuid")" || die "ceph osd new (is the monitor up? $dir/log/mon.a.log)"
[ "$osd_id" = "0" ] || die "the new OSD got id $osd_id, not 0"
ceph-osd "${conf[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/mkfs-osd.log" 2>&1 || { cat "$dir/log/mkfs-osd.log" >&2; die "ceph-osd --mkfs"; }
# Now and then the OSD asks the monitor something before it has the cluster's map (its command
# then carries a zero fsid, which the monitor refuses) and exits, at start or just after it
# went to the background; or it stays down. It is started again then, up to 4 times.
osd_up() { ceph "${conf[@]}" osd stat 2>/dev/null | grep -q "1 up"; }
osd_pid() { cat "$dir/run/osd.0.pid" 2>/dev/null || true; }
osd_alive() { local p; p="$(osd_pid)"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
up=""
for attempt in 1 2 3 4; do
  if ceph-osd "${conf[@]}" -i 0 2>>"$dir/log/start.log"; then
    for i in $(seq 45); do
      if osd_up; then up=yes; break; fi
      p="$(osd_pid)"
      if [ -n "$p" ] && ! kill -0 "$p" 2>/dev/null; then break; fi  # it exited
      if [ -z "$p" ] && [ "$i" -gt 10 ]; then break; fi          # it never wrote its pid
      sleep 1
    done
  fi
  [ -n "$up" ] && break
  log "the OSD did not come up (try $attempt): starting it again"
  if osd_alive; then
    kill "$(osd_pid)" 2>/dev/null || true
    for _ in $(seq 50); do osd_alive || break; sleep 0.2; done
    osd_alive && kill -9 "$(osd_pid)" 2>/dev/null || true
  fi
  sleep 1
done
if [ -z "$up" ]; then
  grep -v rocksdb "$dir/log/osd.0.log" | tail -15 >&2 || true
  die "the OSD did not come up (its log: $dir/log/osd.0.log)"
fi
radosgw "${conf[@]}" -n client.rgw.local 2>>"$dir/log/start.log" || die "radosgw did not start (see $dir/log/client.rgw.local.log)"

access_key="ingestfs-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
secret="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$secret" >"$dir/s3.secret"
chmod 600 "$dir/s3.secret"
for _ in $(seq "$timeout"); do
  if radosgw-admin "${conf[@]}" -n client.rgw.local user create --uid=ingestfs --display-name=ingestfs \
       --access-key="$access_key" --secret-key="$secret" >"$dir/log/user.json" 2>"$dir/log/user.err"; then
    break
  fi
  sleep 1
done
grep -q "$access_key" "$dir/log/user.json" 2>/dev/null || { cat "$dir/log/user.err" >&2; die "radosgw-admin user create"; }

endpoint="http://127.0.0.1:$rgw_port"
bucket="ingest"
S3_ENDPOINT="$endpoint" S3_ACCESS_KEY="$access_key" S3_SECRET_FILE="$dir/s3.secret" S3_BUCKET="$bucket" \
  TIMEOUT="$timeout" python3 - <<'PY' || die "the gateway did not answer, or the bucket could not be made (see $dir/log/client.rgw.local.log)"
import os, time, boto3, botocore
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                  aws_secret_access_key=open(os.environ["S3_SECRET_FILE"]).read().strip(),
                  config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
deadline = time.time() + int(os.environ["TIMEOUT"])
while True:
    try:
        s3.create_bucket(Bucket=os.environ["S3_BUCKET"])
        s3.head_bucket(Bucket=os.environ["S3_BUCKET"])
        break
    except Exception as e:
        if time.time() > deadline:
            raise
        time.sleep(0.5)
PY
cat >"$dir/s3.env" <<ENV
S3_ENDPOINT=$endpoint
S3_REGION=us-east-1
S3_BUCKET=$bucket
S3_ACCESS_KEY=$access_key
S3_SECRET_FILE=$dir/s3.secret
S3_ACCESS_LOG=$dir/log/client.rgw.local.log
ENV
started=yes
log "ready in $(( $(date +%s) - t0 )) s: S3 at $endpoint, bucket $bucket (settings in $dir/s3.env)"
