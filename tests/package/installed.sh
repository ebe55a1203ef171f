#!/usr/bin/env bash
# The Debian package, installed for real: apt-get install ./ingestfs_*.deb, then the installed
# binaries only (/usr/bin): the reference platform on loopback, a mount made by mount(8) from an
# fstab line (mount -T: the fstab example's options, through mount.fuse3 as at boot), a copy,
# the upload confirmed and compared by sha256, the mount table's source, type and nosuid,nodev,
# a second mount by mount -t fuse.ingestfs reading the platform's copy back,
# the package's files and dependencies, the systemd unit checked by systemd-analyze. The
# package is removed again at the end unless it was installed before.
#
#   bash tests/package/installed.sh build-deb/ingestfs_0.1.0_amd64.deb
set -euo pipefail
deb="$(realpath "${1:?the .deb to install}")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! sudo -n true 2>/dev/null; then
    echo "##########################################################################" >&2
    echo "## package test: installing a package needs root or sudo; not tested.   ##" >&2
    echo "##########################################################################" >&2
    [ "${CI:-}" = "true" ] && exit 1
    exit 0
  fi
  SUDO="sudo"
fi
fail() { echo "package test: FAILED: $*" >&2; exit 1; }

work="$(mktemp -d)"
server_pid=""
had_package=""
if dpkg-query -W -f='${Status}' ingestfs 2>/dev/null | grep -q "install ok installed"; then had_package=yes; fi
cleanup() {
  if findmnt -n "$work/mnt" >/dev/null 2>&1; then $SUDO umount "$work/mnt" 2>/dev/null || $SUDO umount -l "$work/mnt" || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -z "$had_package" ] && dpkg-query -W -f='${Status}' ingestfs 2>/dev/null | grep -q installed; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq ingestfs >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "package test: apt-get install $(basename "$deb")"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$deb" >"$work/apt.log" 2>&1 \
  || { cat "$work/apt.log" >&2; fail "apt-get install of the package"; }

# What the package holds and needs.
for f in /usr/bin/ingestfs /usr/bin/ingestfs-server /usr/share/man/man1/ingestfs.1.gz \
         /usr/share/man/man1/ingestfs-server.1.gz /usr/lib/systemd/system/ingestfs@.service \
         /etc/logrotate.d/ingestfs /usr/share/doc/ingestfs/examples/fstab.example \
         /usr/share/doc/ingestfs/examples/smb.conf.example /usr/share/doc/ingestfs/README.md; do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not in the package"
done
depends="$(dpkg-query -W -f='${Depends}' ingestfs)"
for d in fuse3 libfuse3-3 libcurl4 libssl3 libsqlite3-0 libsystemd0; do
  case ", $depends," in *", $d"[\ ,]*) ;; *) fail "the package does not depend on $d (Depends: $depends)" ;; esac
done
grep -qx /etc/logrotate.d/ingestfs /var/lib/dpkg/info/ingestfs.conffiles || fail "/etc/logrotate.d/ingestfs is not a conffile"
grep -q '^ExecStart=/usr/bin/ingestfs ' /usr/lib/systemd/system/ingestfs@.service || fail "the unit does not run /usr/bin/ingestfs"
grep -q '^Type=notify$' /usr/lib/systemd/system/ingestfs@.service || fail "the unit is not Type=notify"
man_text="$(zcat /usr/share/man/man1/ingestfs.1.gz)"
[[ "$man_text" == *"FSTAB AND SYSTEMD"* ]] || fail "the manual page is not readable"
/usr/bin/ingestfs --version | grep -q '^ingestfs ' || fail "ingestfs --version"
if command -v systemd-analyze >/dev/null 2>&1; then
  # A template is checked through an instance; its EnvironmentFile is only read at start.
  # Documentation=man:ingestfs(1) is looked up with man(1) when it is installed.
  man_check="--man=no"
  command -v man >/dev/null 2>&1 && man_check="--man=yes"
  systemd-analyze verify "$man_check" ingestfs@mnt-platform.service >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify ingestfs@.service"; }
  echo "package test: systemd-analyze verify ingestfs@.service: clean"
else
  echo "package test: NOTE: systemd-analyze is not installed; the unit's syntax was not checked" >&2
  [ "${CI:-}" = "true" ] && fail "systemd-analyze missing under CI"
fi

# The installed reference platform on loopback.
token="pkg-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$token" >"$work/token"
chmod 600 "$work/token"
/usr/bin/ingestfs-server --listen 127.0.0.1:0 --data "$work/platform" --token-file "$work/token" \
  >"$work/ready" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/ready" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/ready" || { cat "$work/server.log" >&2; fail "ingestfs-server did not start"; }
api="$(sed 's/^listening on //' "$work/ready")/api"

# The fstab example's line, with this test's platform, mount point, token and cache.
mkdir -p "$work/mnt"
line="$(grep -v '^#' /usr/share/doc/ingestfs/examples/fstab.example | grep fuse.ingestfs)"
line="${line//http:\/\/127.0.0.1:8080\/api/$api}"
line="${line//\/mnt\/platform/$work/mnt}"
line="${line//token_file=\/etc\/ingestfs\/token/token_file=$work/token,cache_dir=$work/cache,settle=0.2}"
printf '%s\n' "$line" >"$work/fstab"
$SUDO mount -T "$work/fstab" "$work/mnt" || fail "mount -T (an fstab line of type fuse.ingestfs)"
read -r source fstype options < <(findmnt -n -o SOURCE,FSTYPE,OPTIONS "$work/mnt")
[ "$source" = "$api" ] || fail "the mount table's source is '$source', not the platform '$api'"
[ "$fstype" = "fuse.ingestfs" ] || fail "the mount's type is '$fstype'"
case ",$options," in *,nosuid,*) ;; *) fail "not nosuid: $options" ;; esac
case ",$options," in *,nodev,*) ;; *) fail "not nodev: $options" ;; esac
echo "package test: mounted by mount(8): $source on $work/mnt type $fstype ($options)"

mkdir "$work/mnt/pkg-run"
head -c 12000000 /dev/urandom >"$work/sample.bin"
cp "$work/sample.bin" "$work/mnt/pkg-run/sample.bin"
/usr/bin/ingestfs wait "$work/mnt" --timeout 120 || fail "ingestfs wait"
python3 - "$api" "$work/token" "$work/sample.bin" <<'PY' || fail "the platform's copy differs"
import hashlib, json, sys, urllib.request
api, token, path = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
def get(p):
    return json.load(urllib.request.urlopen(urllib.request.Request(api + p, headers={"Authorization": "Bearer " + token})))
ds = next(d for d in get("/datasets")["items"] if d["name"] == "pkg-run")
files = {f["filename"]: f["sha256"] for f in get("/datasets/%s/files" % ds["id"])["items"]}
want = hashlib.sha256(open(path, "rb").read()).hexdigest()
print("package test: platform sha256 %s, local %s" % (files.get("sample.bin"), want))
sys.exit(0 if files.get("sample.bin") == want else 1)
PY
/usr/bin/ingestfs unmount "$work/mnt" --wait --timeout 60 || fail "ingestfs unmount"
findmnt -n "$work/mnt" >/dev/null && fail "still mounted after ingestfs unmount"

# The same by hand: mount -t fuse.ingestfs with an empty cache, the file read from the platform.
$SUDO mount -t fuse.ingestfs "$api" "$work/mnt" -o "token_file=$work/token,cache_dir=$work/cache2" \
  || fail "mount -t fuse.ingestfs"
[ "$(findmnt -n -o FSTYPE "$work/mnt")" = "fuse.ingestfs" ] || fail "mount -t fuse.ingestfs made no such mount"
cmp -s "$work/sample.bin" "$work/mnt/pkg-run/sample.bin" || fail "the platform's file read through mount -t differs"
echo "package test: mount -t fuse.ingestfs: the platform's copy reads back byte-exact"
$SUDO umount "$work/mnt" || fail "umount"
echo "package test: passed"
