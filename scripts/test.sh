#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: setup, configure, build, ctest.
#   bash scripts/test.sh              all tests
#   bash scripts/test.sh -L unit      only the unit tests (any ctest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

# Integration tests mount over /dev/fuse. Say so loudly when it is missing; under CI it fails.
if [ ! -c /dev/fuse ]; then
  echo "##################################################################" >&2
  echo "## /dev/fuse is missing: the mount integration tests cannot run. ##" >&2
  echo "##################################################################" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi

werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
cmake -S . -B build -G Ninja -DINGESTFS_WERROR="$werror" >/dev/null
cmake --build build -j "$(nproc)"
cd build
ctest --output-on-failure -j 2 "$@"
