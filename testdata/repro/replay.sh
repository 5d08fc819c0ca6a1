#!/usr/bin/env bash
# replay.sh BUG SIMRUN-FLAGS...: replays a known upstream bug's saved
# schedule, prints the run (without the goroutine dump of a panic) and the
# bug's fingerprint, and fails unless simrun classifies the run as BUG.
set -uo pipefail
bug=$1; shift
cd "$(dirname "$0")/../.."
echo "replaying $bug: go run ./cmd/simrun $*"
out=$(go run ./cmd/simrun "$@" 2>&1)
printf '%s\n' "$out" | grep -v -e '^goroutine ' -e '^	' -e '^github.com/' -e '^created by ' -e '^$' -e '^exit status '
if printf '%s\n' "$out" | grep -q "FAIL known=$bug "; then
  echo
  go run ./cmd/simrun --list-known | grep -A1 -x -F "$bug"
  echo "reproduced: the run's fingerprint is $bug"
else
  echo "NOT reproduced: simrun did not classify the run as $bug"
  exit 1
fi
