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
n=0 inputs=0
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while read -r pkg name; do
  [ -n "$pkg" ] || continue
  # -parallel 2: the machines this runs on have two cores.
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -parallel 2 "$pkg" >"$log" 2>&1; then
    cat "$log"
    echo "fuzz $pkg $name: FAILED (the crasher is under $pkg/testdata/fuzz/$name/)"
    exit 1
  fi
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz $pkg $name: ok, $execs inputs in $fuzztime"
  n=$((n + 1)) inputs=$((inputs + execs))
done <<<"$targets"
echo "fuzzed $n targets, $inputs inputs, in $(( $(date +%s) - start )) s"
