#!/usr/bin/env bash
# Hunts for lost or wrong files for longer than CI does: the model-based random-operation test
# (random operations, kill -9 of the daemon, remounts, platform restarts, checked against a
# reference model) for the given minutes, then the kill -9 campaign with cp and rsync.
# Prints what each did (sequences, operations, kills, trials) and the violations found.
#
#   bash scripts/soak.sh [--minutes N] [--trials N]     (defaults: 30 minutes, 200 trials)
#
# Needs root and /dev/fuse, as the integration tests do. A failing sequence prints its seed;
# INGESTFS_MODEL_SEED=SEED build/bin/model_integration_tests replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=30
trials=200
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="${2:?--minutes takes a number}"; shift 2 ;;
    --trials) trials="${2:?--trials takes a number}"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$minutes$trials" in
  *[!0-9]*) echo "soak.sh: --minutes and --trials take whole numbers" >&2; exit 2 ;;
esac

bash scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target ingestfs ingestfs-server model_integration_tests promise_integration_tests

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
status=0
echo "soak: model-based random operations for $minutes minute(s)"
INGESTFS_MODEL_SECONDS=$((minutes * 60)) build/bin/model_integration_tests >"$log/model.txt" 2>&1 || status=1
echo "soak: kill -9 campaign, $trials trials"
INGESTFS_KILL_TRIALS="$trials" build/bin/promise_integration_tests --gtest_filter='*KillNineCampaign*' \
  >"$log/kills.txt" 2>&1 || status=1
if [ "$status" -ne 0 ]; then
  grep -h -A40 -E 'Failure|seed' "$log/model.txt" "$log/kills.txt" | head -400 >&2
fi
grep -h -E '^(model test|kill campaign):' "$log/model.txt" "$log/kills.txt" || true
if [ "$status" -ne 0 ]; then
  echo "soak: VIOLATIONS FOUND (above)" >&2
else
  echo "soak: no violations"
fi
exit "$status"
