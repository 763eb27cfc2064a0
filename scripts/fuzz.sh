#!/usr/bin/env bash
# Runs every Go fuzz target in the repository (func FuzzX in a _test.go file)
# for FUZZTIME each (default 8s), one after another. A crasher that a target
# finds is written by go test under that package's testdata/fuzz/FuzzX/ and
# fails this script; commit it so it stays a regression case (plain go test
# runs every file there). Usage: scripts/fuzz.sh [FUZZTIME]
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-${FUZZTIME:-8s}}
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
  pkg=$(dirname "$f")
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed "s|^func |$pkg |"
done)
# files in a corpus directory (0 when it does not exist)
count() { if [ -d "$1" ]; then ls "$1" | wc -l; else echo 0; fi; }
n=0 inputs=0
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg name; do
  [ -n "$pkg" ] || continue
  corpus="$pkg/testdata/fuzz/$name"
  before=$(count "$corpus")
  # -parallel 2: the machines this runs on have two cores. go test's
  # fuzzing sometimes fails a run whose deadline passes while a worker is
  # busy ("context deadline exceeded") without any crasher: such a run is
  # tried once more; a crasher always leaves a file under $corpus.
  for try in 1 2; do
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg" >"$log" 2>&1; then
      break
    fi
    if [ "$try" = 1 ] && [ "$(count "$corpus")" = "$before" ] && grep -q 'context deadline exceeded' "$log"; then
      echo "fuzz $pkg $name: go test's deadline passed while a worker was busy, no crasher; once more"
      continue
    fi
    cat "$log"
    echo "fuzz $pkg $name: FAILED (a crasher is under $corpus/; commit it as a regression case)"
    exit 1
  done
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz $pkg $name: ok, $execs inputs in $fuzztime"
  n=$((n + 1)) inputs=$((inputs + execs))
done <<<"$targets"
echo "fuzzed $n targets, $inputs inputs, in $(( $(date +%s) - start )) s"
