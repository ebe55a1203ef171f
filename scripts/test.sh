#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: setup, then four stages, each in its own
# build directory:
#   main   the build CI ships (warnings as errors under CI) and every test (ctest)
#   asan   AddressSanitizer + UndefinedBehaviorSanitizer: the unit and integration tests,
#          mounts included (daemons and servers run sanitized too), then the server's S3 client
#          and the server and upload tests over RGW (as in the rgw stage)
#   tsan   ThreadSanitizer: the unit tests and the mount tests that race (parallel writers,
#          renames and unlinks during uploads and confirmations, the model test)
#   package  the Debian package (scripts/package.sh), installed with apt-get and used from
#          /usr/bin: a mount by mount(8) from the fstab example's line, a copy confirmed
#          (tests/package/installed.sh; needs root or sudo; removed again afterwards)
#   rgw    the reference server over Ceph's RADOS Gateway, a single-node cluster on loopback
#          (scripts/ceph-local.sh), started and stopped by the stage: its S3 client, then every
#          integration test (server, upload, mount, model) with the bytes in RGW
#   fuzz   every libFuzzer target of tests/fuzz for a short budget (scripts/fuzz.sh)
#
#   bash scripts/test.sh                      all stages
#   bash scripts/test.sh --only main [ARGS]   one stage; ARGS pass to ctest (e.g. -L unit)
set -euo pipefail
cd "$(dirname "$0")/.."

stages="main package rgw asan tsan fuzz"
if [ "${1:-}" = "--only" ]; then
  stages="${2:?--only takes main, package, rgw, asan, tsan or fuzz}"
  shift 2
fi

bash scripts/setup.sh --test

# Integration tests mount over /dev/fuse. Say so loudly when it is missing; under CI it fails.
if [ ! -c /dev/fuse ]; then
  echo "##################################################################" >&2
  echo "## /dev/fuse is missing: the mount integration tests cannot run. ##" >&2
  echo "##################################################################" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi

werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
jobs="$(nproc)"
root="$(pwd)"
# Sanitizer reports are fatal; the one UBSan suppression is explained in its file.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/tests/sanitizers/ubsan.supp"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tests/sanitizers/tsan.supp"

stage() { echo "=== test.sh: $1 ($(date -u +%H:%M:%S))"; }
# A single-node Ceph on loopback for a stage: its settings file in $ceph_dir/s3.env; stopped by
# ceph_stop (and on exit). A cluster that did not come up is started once more from scratch
# (its log said why).
ceph_start() {
  ceph_dir="$(mktemp -d)/ceph"
  trap 'bash scripts/ceph-local.sh stop "$ceph_dir" >/dev/null 2>&1 || true' EXIT
  if ! bash scripts/ceph-local.sh start "$ceph_dir"; then
    bash scripts/ceph-local.sh stop "$ceph_dir" >/dev/null 2>&1 || true
    bash scripts/ceph-local.sh start "$ceph_dir"
  fi
}
ceph_stop() {
  bash scripts/ceph-local.sh stop "$ceph_dir"
  rmdir "$(dirname "$ceph_dir")"
  trap - EXIT
}
# Sanitizer builds: -O1 (as the sanitizers advise) and line tables only, to build fast.
sanitized=(-G Ninja -DINGESTFS_WERROR="$werror" -DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=-O1 -g1")

for s in $stages; do
  case "$s" in
    main)
      stage "main build and every test"
      cmake -S . -B build -G Ninja -DINGESTFS_WERROR="$werror" >/dev/null
      cmake --build build -j "$jobs"
      (cd build && ctest --output-on-failure -j 2 -LE rgw "$@")
      ;;
    asan)
      stage "ASan+UBSan build, unit and integration tests"
      cmake -S . -B build-asan "${sanitized[@]}" -DINGESTFS_SANITIZE=address,undefined >/dev/null
      cmake --build build-asan -j "$jobs"
      (cd build-asan && INGESTFS_MODEL_SECONDS=60 INGESTFS_KILL_TRIALS=10 ctest --output-on-failure -j 2 -LE rgw "$@")
      # The server's S3 mode sanitized too: its S3 client, then the server and upload tests over RGW.
      ceph_start
      (cd build-asan && INGESTFS_TEST_S3_ENV="$ceph_dir/s3.env" ctest --output-on-failure -L rgw "$@")
      (cd build-asan && INGESTFS_TEST_S3_ENV="$ceph_dir/s3.env" ctest --output-on-failure -j 1 -L 'integration|upload' "$@")
      ceph_stop
      ;;
    tsan)
      stage "TSan build, unit tests and the racing mount tests"
      cmake -S . -B build-tsan "${sanitized[@]}" -DINGESTFS_SANITIZE=thread >/dev/null
      cmake --build build-tsan -j "$jobs"
      (cd build-tsan && INGESTFS_MODEL_SECONDS=60 ctest --output-on-failure -j 2 -L unit "$@")
      (cd build-tsan && INGESTFS_MODEL_SECONDS=60 ctest --output-on-failure -j 1 "$@" -R \
        'CpOfEverySizeAndATree|ReadersSeeWritesOfOtherDescriptors|PlatformFilesCannotBeDeleted|AnUnlinkThatReturnedZero|ARenameRacingItsUpload|AnOpenUnlinkedFile|RsyncTempThenRename|EightConcurrentClients|MetricsArePrometheus|BwlimitTimetable|ModelTest')
      ;;
    package)
      stage "the Debian package: build, apt-get install, mount -t fuse.ingestfs"
      deb="$(INGESTFS_WERROR="$werror" bash scripts/package.sh | tail -1)"
      bash tests/package/installed.sh "$deb"
      ;;
    rgw)
      stage "against Ceph's RADOS Gateway (a single-node cluster on loopback)"
      cmake -S . -B build -G Ninja -DINGESTFS_WERROR="$werror" >/dev/null
      cmake --build build -j "$jobs"
      ceph_start
      # The server's S3 client; then every integration test with the servers keeping their bytes
      # in RGW: the server's own, every upload test (crash/resume, expired URLs and faults
      # included), every mount test of every dialect (kills mid-upload, promise, hostile, Samba)
      # and the model test. A test of what only the built-in store does (its throttle, its own
      # keys, a platform's quirks) asks for it by name. One at a time: the store's log stands
      # in for the data plane's access log.
      (cd build && INGESTFS_TEST_S3_ENV="$ceph_dir/s3.env" ctest --output-on-failure -L rgw "$@")
      (cd build && INGESTFS_TEST_S3_ENV="$ceph_dir/s3.env" INGESTFS_MODEL_SECONDS=30 \
        ctest --output-on-failure -j 1 -L 'integration|upload|mount|model' "$@")
      ceph_stop
      ;;
    fuzz)
      stage "fuzz targets, a short budget each"
      bash scripts/fuzz.sh --seconds "${INGESTFS_FUZZ_SECONDS:-30}"
      ;;
    *) echo "test.sh: unknown stage '$s' (main, package, rgw, asan, tsan, fuzz)" >&2; exit 2 ;;
  esac
done
stage "done"
