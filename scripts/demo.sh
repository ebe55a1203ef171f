#!/usr/bin/env bash
# The main job, end to end, on the embedded default: installs and builds what is needed, starts
# the reference platform (ingestfs-server) on loopback, mounts it with ingestfs, copies sample
# files in with cp and rsync, waits until the platform has confirmed every one, prints the
# platform's sha256 next to the local one, and unmounts. Exits non-zero if anything differs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build >/dev/null

work=$(mktemp -d)
server_pid=""
mounted=""
cleanup() {
  if [ -n "$mounted" ]; then fusermount3 -u "$work/mnt" 2>/dev/null || fusermount3 -uz "$work/mnt" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

token="demo-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$token" >"$work/token"
build/bin/ingestfs-server --listen 127.0.0.1:0 --data "$work/platform" --token-file "$work/token" \
  >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/ready" 2>/dev/null && break; sleep 0.1; done
api="$(sed 's/^listening on //' "$work/ready")/api"
echo "platform:  $api (ingestfs-server, pid $server_pid)"

mkdir -p "$work/mnt"
build/bin/ingestfs "$api" "$work/mnt" -o "token_file=$work/token,cache_dir=$work/cache"
mounted=yes
echo "mounted:   $work/mnt"

# Sample data as an instrument run would leave it.
mkdir -p "$work/samples/run-42/plate1" "$work/samples/run-42/plate2"
for p in plate1 plate2; do
  for w in A01 A02 B01; do head -c $((3000000 + RANDOM)) /dev/urandom >"$work/samples/run-42/$p/$w.tif"; done
  printf 'well,value\nA01,0.42\nA02,0.17\nB01,0.93\n' >"$work/samples/run-42/$p/results.csv"
done
head -c 40000000 /dev/urandom >"$work/samples/overview.raw"

mkdir "$work/mnt/demo-run"                                   # a new dataset on the platform
cp "$work/samples/overview.raw" "$work/mnt/demo-run/"        # cp
rsync -a "$work/samples/run-42" "$work/mnt/demo-run/"        # rsync (temp name, then rename)
echo "copied:    cp and rsync done; waiting for the platform to confirm every file..."
build/bin/ingestfs wait "$work/mnt" --timeout 300
build/bin/ingestfs status "$work/mnt" | tail -1

python3 - "$api" "$token" "$work/samples" <<'PY'
import hashlib, json, os, sys, urllib.request
api, token, root = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    req = urllib.request.Request(api + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
ds = next(d for d in get("/datasets")["items"] if d["name"] == "demo-run")
local = {}
for base, _, names in os.walk(root):
    for n in names:
        p = os.path.join(base, n)
        local[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
remote = {f["filename"]: f for f in get(f"/datasets/{ds['id']}/files?limit=1000")["items"]}
ok = True
print(f"\n{'file on the platform':30} {'size':>9}  {'platform sha256':18} {'local sha256':18}")
for name in sorted(local):
    f = remote.get(name)
    same = f is not None and f["sha256"] == local[name]
    ok &= same
    print(f"{name:30} {f['size'] if f else 0:>9}  {(f['sha256'][:16] + '..') if f else 'MISSING':18} "
          f"{local[name][:16]}.. {'same' if same else 'DIFFERENT'}")
extra = set(remote) - set(local)
if extra:
    ok = False
    print("unexpected on the platform:", sorted(extra))
print("\nall files confirmed, byte for byte" if ok else "\nMISMATCH")
sys.exit(0 if ok else 1)
PY
fusermount3 -u "$work/mnt" && mounted=""
echo "unmounted: $work/mnt"
