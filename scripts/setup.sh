#!/usr/bin/env bash
# Installs every build and test dependency of ingestfs from Debian packages; with --test also
# what only the test suite needs (a single-node Ceph for the tests against RGW, Prometheus for
# the metrics test).
# Idempotent and quiet: when everything is present it only checks and returns.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libfuse3-dev fuse3
  libcurl4-openssl-dev curl
  rapidjson-dev libssl-dev zlib1g-dev
  libcpp-httplib-dev
  libgtest-dev libgmock-dev
  python3 python3-boto3
  bsdutils rsync
  samba smbclient
  clang libclang-rt-dev
  libsqlite3-dev
  libsystemd-dev systemd
  libtinyxml2-dev
)
if [ "${1:-}" = "--test" ]; then
  packages+=(ceph-mon ceph-osd radosgw ceph-common prometheus)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
