#!/usr/bin/env bash
# Builds the Debian package of ingestfs into build-deb/ (the binaries, manual pages, systemd
# unit, logrotate snippet and examples, installed under /usr and /etc) and prints its path.
# Install it with:  apt-get install ./build-deb/ingestfs_*.deb
# The build's output goes to stderr; stdout is only the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
cmake -S . -B build-deb -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
  -DINGESTFS_TESTS=OFF -DINGESTFS_WERROR="${INGESTFS_WERROR:-OFF}" >/dev/null
cmake --build build-deb -j "$(nproc)" >&2
rm -f build-deb/ingestfs_*.deb
(cd build-deb && cpack -G DEB >cpack.log 2>&1) || { cat build-deb/cpack.log >&2; exit 1; }
ls "$(pwd)"/build-deb/ingestfs_*.deb
