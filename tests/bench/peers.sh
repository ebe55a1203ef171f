#!/usr/bin/env bash
# The peers on the same store: ingestfs (ingestfs-server keeping its bytes in the bucket), s3fs
# and rclone mount, each mounted over one bucket of a single-node Ceph RADOS Gateway on loopback
# (scripts/ceph-local.sh), and a local directory as the baseline, running the same work:
#   cp of one large file, cp -r of many small files, rsync -a of medium files, ls -l cold and warm.
# For each tool and line it prints the time until the command returned, the time until the store
# held exactly the expected objects (no temporary names; for ingestfs, also confirmed by the
# platform), the store's requests per file (from the gateway's log), the CPU seconds of the
# tool's daemon and of the store (ceph-osd + radosgw), and the ratio to the local directory.
#
#   bash tests/bench/peers.sh [--large-mib N] [--small N] [--medium N] [--tools "ingestfs s3fs rclone"]
#        (defaults: 1024, 1000 files of 4 KiB, 200 files of 1 MiB, all three tools)
# Needs root (mounts), installs what it lacks (Ceph, s3fs, rclone). Figures of one run: put them
# in the README with the date and the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

large_mib=1024
small=1000
medium=200
tools="ingestfs s3fs rclone"
while [ $# -gt 0 ]; do
  case "$1" in
    --large-mib) large_mib="${2:?}"; shift 2 ;;
    --small) small="${2:?}"; shift 2 ;;
    --medium) medium="${2:?}"; shift 2 ;;
    --tools) tools="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "peers.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for n in "$large_mib" "$small" "$medium"; do
  case "$n" in ''|*[!0-9]*) echo "peers.sh: sizes and counts are whole numbers" >&2; exit 2 ;; esac
done

bash scripts/setup.sh --test
need=()
for p in s3fs rclone; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target ingestfs ingestfs-server >/dev/null

work="$(mktemp -d)"
server_pid=""
declare -A daemon_pid
cleanup() {
  for t in ingestfs s3fs rclone; do
    if findmnt -n "$work/mnt-$t" >/dev/null 2>&1; then fusermount3 -u "$work/mnt-$t" 2>/dev/null || fusermount3 -uz "$work/mnt-$t" || true; fi
  done
  for pid in "${daemon_pid[@]}" $server_pid; do kill "$pid" 2>/dev/null || true; done
  bash scripts/ceph-local.sh stop "$work/ceph" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# rclone 1.60 cannot use a custom CA bundle with its own HTTP transport and refuses to start
# when AWS_CA_BUNDLE is set; everything here is plain HTTP on loopback.
unset AWS_CA_BUNDLE
bash scripts/ceph-local.sh start "$work/ceph"
set -a; . "$work/ceph/s3.env"; set +a
secret="$(cat "$S3_SECRET_FILE")"
# A new gateway makes its data pools at the first object and the first multipart upload, which
# takes seconds: done here, so that no tool pays for it.
python3 - <<'PY'
import os, boto3, botocore
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["S3_REGION"],
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                  aws_secret_access_key=open(os.environ["S3_SECRET_FILE"]).read().strip(),
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
b = os.environ["S3_BUCKET"]
s3.put_object(Bucket=b, Key="warmup/one", Body=b"x" * 4096)
up = s3.create_multipart_upload(Bucket=b, Key="warmup/multi")
parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=b, Key="warmup/multi", UploadId=up["UploadId"], PartNumber=n,
                                                   Body=os.urandom(5 << 20))["ETag"]} for n in (1, 2)]
s3.complete_multipart_upload(Bucket=b, Key="warmup/multi", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
s3.get_object(Bucket=b, Key="warmup/multi")["Body"].read()
for k in ("warmup/one", "warmup/multi"):
    s3.delete_object(Bucket=b, Key=k)
PY
store_log="$S3_ACCESS_LOG"

# The data, made once.
mkdir -p "$work/src/small" "$work/src/medium"
head -c $((large_mib << 20)) /dev/urandom >"$work/src/large.bin"
for i in $(seq "$small"); do head -c 4096 /dev/urandom >"$work/src/small/f-$i.dat"; done
for i in $(seq "$medium"); do head -c 1048576 /dev/urandom >"$work/src/medium/m-$i.bin"; done

# ingestfs: the reference platform over the bucket, the mount over the platform.
token="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$token" >"$work/token"
build/bin/ingestfs-server --listen 127.0.0.1:0 --data "$work/platform" --token-file "$work/token" \
  --s3-endpoint "$S3_ENDPOINT" --s3-bucket "$S3_BUCKET" --s3-access-key "$S3_ACCESS_KEY" \
  --s3-secret-file "$S3_SECRET_FILE" >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/ready" 2>/dev/null && break; sleep 0.1; done
api="$(sed 's/^listening on //' "$work/ready")/api"
# s3fs and rclone: the same bucket, each under a prefix of its own.
printf '%s:%s\n' "$S3_ACCESS_KEY" "$secret" >"$work/s3fs.passwd"
chmod 600 "$work/s3fs.passwd"
export RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph RCLONE_CONFIG_RGW_ENDPOINT="$S3_ENDPOINT" \
  RCLONE_CONFIG_RGW_ACCESS_KEY_ID="$S3_ACCESS_KEY" RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY="$secret" \
  RCLONE_CONFIG_RGW_REGION="$S3_REGION"

mount_tool() {  # mount_tool TOOL: mounts and records the daemon's pid
  local t="$1" mp="$work/mnt-$1"
  mkdir -p "$mp"
  case "$t" in
    ingestfs)
      build/bin/ingestfs "$api" "$mp" -f -o "token_file=$work/token,cache_dir=$work/cache-ingestfs,settle=0.2" \
        2>"$work/ingestfs.log" &
      daemon_pid[$t]=$! ;;
    s3fs)
      s3fs "$S3_BUCKET:/s3fs" "$mp" -f -o "url=$S3_ENDPOINT,use_path_request_style,passwd_file=$work/s3fs.passwd" \
        -o "endpoint=$S3_REGION,use_cache=$work/cache-s3fs" >"$work/s3fs.log" 2>&1 &
      daemon_pid[$t]=$! ;;
    rclone)
      rclone mount "rgw:$S3_BUCKET/rclone" "$mp" --vfs-cache-mode writes --cache-dir "$work/cache-rclone" \
        2>"$work/rclone.log" &
      daemon_pid[$t]=$! ;;
  esac
  for _ in $(seq 200); do findmnt -n "$mp" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "peers.sh: $t did not mount (see $work/$t.log)" >&2
  return 1
}
unmount_tool() {
  local t="$1"
  fusermount3 -u "$work/mnt-$t" 2>/dev/null || true
  wait "${daemon_pid[$t]}" 2>/dev/null || true
  unset 'daemon_pid[$t]'
}

cpu_of() {  # cpu_of PID...: user+system seconds so far
  local total=0 pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    total=$(awk -v t="$total" '{print t + ($14 + $15) / 100}' "/proc/$pid/stat")
  done
  echo "$total"
}
# The store side: ceph-osd and radosgw, and for ingestfs also the platform (ingestfs-server),
# which in a deployment runs beside the store, not on the instrument's gateway.
store_pids() {  # store_pids TOOL
  cat "$work/ceph/run/osd.0.pid" "$work/ceph/run/client.rgw.local.pid" 2>/dev/null
  if [ "$1" = ingestfs ]; then echo "$server_pid"; fi
}

# Watches the store from before a line's command starts: writes the wall-clock time at which
# the keys under PREFIX (ingestfs: staging/JOB/NAME -> NAME) were first exactly the names in
# WANTFILE, listing every 100 ms over one connection (boto3, whose requests are not counted).
watch_store() {  # watch_store PREFIX WANTFILE OUTFILE
  python3 - "$@" <<'PY'
import os, sys, time, boto3, botocore
prefix, want_file, out = sys.argv[1:4]
want = set(l.strip() for l in open(want_file) if l.strip())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["S3_REGION"],
                  aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                  aws_secret_access_key=open(os.environ["S3_SECRET_FILE"]).read().strip(),
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
s3.list_objects_v2(Bucket=os.environ["S3_BUCKET"], Prefix=prefix, MaxKeys=1)  # connected
open(out + ".ready", "w").close()
deadline = time.time() + 600
have = set()
while time.time() < deadline:
    have = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["S3_BUCKET"], Prefix=prefix):
        for o in page.get("Contents", []):
            k = o["Key"][len(prefix):]
            if k == "" or k.endswith("/"):
                continue  # a folder marker (s3fs, rclone), not a file
            if prefix == "staging/":
                k = k.split("/", 1)[1] if "/" in k else k
            have.add(k)
    if have == want:
        open(out, "w").write("%.3f\n" % time.time())
        sys.exit(0)
    time.sleep(0.1)
sys.stderr.write("peers.sh: under %s the store did not hold exactly the expected files within 600 s: "
                 "missing %s, extra %s\n" % (prefix, sorted(want - have)[:3], sorted(have - want)[:3]))
sys.exit(1)
PY
}

# One line of work through one tool: the command's time, the time until the store holds exactly
# `want` (a file of names), requests per file and CPU.
declare -A result
run_line() {  # run_line TOOL LINE COMMAND PREFIX WANTFILE NFILES
  local t="$1" line="$2" cmd="$3" prefix="$4" want="$5" nfiles="$6"
  local log_from cpu_t0 cpu_s0 t0 t1 t2
  log_from=$(wc -l <"$store_log")
  cpu_t0=$(cpu_of "${daemon_pid[$t]:-}")
  cpu_s0=$(cpu_of $(store_pids "$t"))
  local watcher=""
  rm -f "$work/held-at"
  if [ "$t" != local ] && [ "${line#ls}" = "$line" ]; then
    rm -f "$work/held-at.ready"
    watch_store "$prefix" "$want" "$work/held-at" &
    watcher=$!
    for _ in $(seq 300); do [ -e "$work/held-at.ready" ] && break; sleep 0.05; done
  fi
  t0=$(date +%s.%N)
  bash -c "$cmd"
  t1=$(date +%s.%N)
  t2="$t1"
  if [ "$t" = local ] && [ "${line#ls}" = "$line" ]; then  # the local copy, durable
    sync
    t2=$(date +%s.%N)
  fi
  if [ -n "$watcher" ]; then
    wait "$watcher" || exit 1
    t2=$(cat "$work/held-at")
    if [ "$t" = ingestfs ]; then  # and confirmed by the platform
      build/bin/ingestfs wait "$work/mnt-ingestfs" --timeout 600 >/dev/null
      t2=$(awk -v a="$t2" -v b="$(date +%s.%N)" 'BEGIN{print (b > a ? b : a)}')
    fi
  fi
  local requests
  # Every request the store served for this line, the platform's own included; not this
  # script's listings.
  requests=$(tail -n +"$((log_from + 1))" "$store_log" | grep ' beast: ' | grep -vc '"Boto3/' || true)
  local cpu_t cpu_s
  cpu_t=$(awk -v a="$cpu_t0" -v b="$(cpu_of "${daemon_pid[$t]:-}")" 'BEGIN{printf "%.2f", b - a}')
  cpu_s=$(awk -v a="$cpu_s0" -v b="$(cpu_of $(store_pids "$t"))" 'BEGIN{printf "%.2f", b - a}')
  result["$t/$line"]=$(awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v r="$requests" -v n="$nfiles" -v ct="$cpu_t" -v cs="$cpu_s" \
    'BEGIN{printf "%.2f %.2f %.1f %s %s", t1 - t0, t2 - t0, r / n, ct, cs}')
}

for t in local $tools; do
  case "$t" in local|ingestfs|s3fs|rclone) ;; *) echo "peers.sh: unknown tool $t (ingestfs, s3fs, rclone)" >&2; exit 2 ;; esac
  # Each tool starts from the same state: the previous one's writes on disk, no page cache.
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  if [ "$t" = local ]; then dest="$work/local"; mkdir -p "$dest"; else mount_tool "$t"; dest="$work/mnt-$t"; fi
  case "$t" in ingestfs) mkdir "$dest/bench"; base="$dest/bench"; prefix="staging/" ;; *) base="$dest"; prefix="$t/" ;; esac
  [ "$t" = s3fs ] && prefix="s3fs/"
  : >"$work/want"
  echo "large.bin" >>"$work/want"
  run_line "$t" "cp ${large_mib} MiB" "cp '$work/src/large.bin' '$base/'" "$prefix" "$work/want" 1
  for i in $(seq "$small"); do echo "small/f-$i.dat" >>"$work/want"; done
  run_line "$t" "cp -r ${small} x 4 KiB" "cp -r '$work/src/small' '$base/'" "$prefix" "$work/want" "$small"
  for i in $(seq "$medium"); do echo "medium/m-$i.bin" >>"$work/want"; done
  run_line "$t" "rsync -a ${medium} x 1 MiB" "rsync -a '$work/src/medium' '$base/'" "$prefix" "$work/want" "$medium"
  if [ "$t" != local ]; then unmount_tool "$t"; mount_tool "$t"; fi
  sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  run_line "$t" "ls -l ${small} cold" "ls -l '$base/small' >/dev/null" "$prefix" "$work/want" "$small"
  run_line "$t" "ls -l ${small} warm" "ls -l '$base/small' >/dev/null" "$prefix" "$work/want" "$small"
  [ "$t" != local ] && unmount_tool "$t"
done

echo
echo "peers on one Ceph RGW bucket ($(date -u +%Y-%m-%d), $(nproc) cores). Per tool: seconds until the command returned /"
echo "until the store held exactly the files (ingestfs: and the platform confirmed them; local: cp + sync), that"
echo "against local disk's, store requests per file, CPU s of the tool's daemon / of the store side (ceph-osd +"
echo "radosgw; for ingestfs also the platform server). ls lines: the command's time only."
printf '%-22s' "line"
for t in local $tools; do printf ' | %-36s' "$t"; done
echo
for line in "cp ${large_mib} MiB" "cp -r ${small} x 4 KiB" "rsync -a ${medium} x 1 MiB" "ls -l ${small} cold" "ls -l ${small} warm"; do
  printf '%-22s' "$line"
  read -r _ base_held _ _ _ <<<"${result["local/$line"]}"
  for t in local $tools; do
    read -r ret held req ct cs <<<"${result["$t/$line"]}"
    if [ "$t" = local ]; then
      printf ' | %-36s' "$(printf '%.2f/%.2f' "$ret" "$held")"
    else
      printf ' | %-36s' "$(awk -v r="$ret" -v h="$held" -v b="$base_held" -v q="$req" -v ct="$ct" -v cs="$cs" \
        'BEGIN{printf "%.2f/%.2f (%.1fx) %s req %s/%s", r, h, (b > 0 ? h / b : 0), q, ct, cs}')"
    fi
  done
  echo
done
