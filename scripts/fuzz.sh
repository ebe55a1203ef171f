#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, with ASan and UBSan) and runs each from its
# seed corpus (tests/fuzz/corpus/<target>/, kept in the repository; what a run adds stays in a
# temp dir). Prints executions per target and in all; exits non-zero on any crash, leak or
# sanitizer report, leaving the crashing input in build-fuzz/findings/.
#
#   bash scripts/fuzz.sh [--seconds N | --minutes N] [--target NAME]
#        (default: 30 seconds per target; --minutes N splits N minutes among the targets)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
minutes=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds takes a number}"; shift 2 ;;
    --minutes) minutes="${2:?--minutes takes a number}"; shift 2 ;;
    --target) only="${2:?--target takes a name}"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$seconds$minutes" in
  *[!0-9]*) echo "fuzz.sh: --seconds and --minutes take whole numbers" >&2; exit 2 ;;
esac

bash scripts/setup.sh
targets=(fuzz_answers fuzz_sigv4 fuzz_server_requests fuzz_record_log fuzz_names fuzz_s3_answers)
if [ -n "$only" ]; then targets=("$only"); fi
if [ -n "$minutes" ]; then seconds=$(( minutes * 60 / ${#targets[@]} )); fi

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DINGESTFS_FUZZ=ON -DINGESTFS_SANITIZE=address,undefined >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"

root="$(pwd)"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$root/tests/sanitizers/ubsan.supp"
# The record-log target writes and syncs files each run: on tmpfs when there is one.
work="$(mktemp -d -p "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")")"
trap 'rm -rf "$work"' EXIT
mkdir -p build-fuzz/findings
total=0
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if TMPDIR="$work" build-fuzz/bin/"$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="build-fuzz/findings/$t-" "$work/$t" "tests/fuzz/corpus/$t" \
       >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED"
    status=1
    grep -E -A30 'ERROR|runtime error|deadly signal|Test unit written' "$log" | head -60 >&2 || tail -40 "$log" >&2
  fi
  runs="$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -1)"
  runs="${runs:-0}"
  total=$(( total + runs ))
  echo "fuzz: $t: $runs executions in ${seconds}s, $result"
done
echo "fuzz: $total executions in all, $( [ "$status" -eq 0 ] && echo "0 crashes" || echo "FINDINGS (above; inputs in build-fuzz/findings/)")"
exit "$status"
