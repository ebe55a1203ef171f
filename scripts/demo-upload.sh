#!/usr/bin/env bash
# Sets everything up, starts ingestfs-server on loopback, uploads sample files with
# `ingestfs upload`, and prints the platform's sha256 next to the local one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build >/dev/null

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

token=demo-$RANDOM$RANDOM
build/bin/ingestfs-server --listen 127.0.0.1:0 --data "$work/platform" --token "$token" >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/ready" 2>/dev/null && break; sleep 0.1; done
url=$(sed 's/^listening on //' "$work/ready")
echo "platform: $url/api"

mkdir -p "$work/samples/plate1"
head -c 20000000 /dev/urandom >"$work/samples/plate1/A01.tif"
echo "sample,value" >"$work/samples/plate1/results.csv"
echo "run notes" >"$work/samples/notes.txt"

INGESTFS_TOKEN=$token build/bin/ingestfs upload --api "$url/api" --dataset demo-run \
  --cache-dir "$work/cache" "$work/samples/plate1" "$work/samples/notes.txt"

python3 - "$url/api" "$token" "$work/samples" <<'PY'
import hashlib, json, os, sys, urllib.request
api, token, root = sys.argv[1], sys.argv[2], sys.argv[3]
def get(path):
    req = urllib.request.Request(api + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))
ds = next(d for d in get("/datasets")["items"] if d["name"] == "demo-run")
ok = True
print(f"{'file':28} {'platform sha256':18} {'local sha256':18}")
for f in get(f"/datasets/{ds['id']}/files")["items"]:
    local = os.path.join(root, f["filename"])
    h = hashlib.sha256(open(local, "rb").read()).hexdigest()
    same = h == f["sha256"]
    ok &= same
    print(f"{f['filename']:28} {f['sha256'][:16]}.. {h[:16]}.. {'same' if same else 'DIFFERENT'}")
sys.exit(0 if ok else 1)
PY
