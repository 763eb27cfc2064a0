#!/usr/bin/env bash
# The seeded acceptance runs on the CPU (issue 3's quality bars), each checked
# against its bar from summary.json. About 35 minutes on two cores.
#   make accuracy            # all of them
#   scripts/accuracy.sh lenet cnn   # a selection, by name
set -uo pipefail
cd "$(dirname "$0")/.."
K=./kiln
OUT=${ACCURACY_DIR:-runs/accuracy}
mkdir -p "$OUT"
fail=0
# name | bar: summary key, comparison, value | flags
runs=(
  "lenet|test_accuracy >= 0.99|--model lenet --dataset mnist --epochs 3 --seed 1"
  "classes01|test_accuracy >= 0.998|--classes 0,1 --epochs 1 --seed 1"
  "cnn|test_accuracy >= 0.91|--model cnn --dataset fashion-mnist --epochs 3 --seed 1"
  "gmlp|test_accuracy >= 0.89|--model gmlp --dataset fashion-mnist --epochs 3 --seed 1"
  "cbam|test_accuracy >= 0.89|--model cbam --dataset fashion-mnist --epochs 3 --seed 1"
  "inception|test_accuracy >= 0.89|--model inception --dataset fashion-mnist --epochs 3 --seed 1"
  "rotation|test_rmse <= 6|--model cnn --dataset mnist-rotation --epochs 5 --seed 1"
  "earlystop|stopped_early == true|--early-stop val_acc --patience 2 --epochs 30 --subset 0.2 --seed 1"
)
for r in "${runs[@]}"; do
  IFS='|' read -r name bar flags <<<"$r"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  dir="$OUT/$name"
  rm -rf "$dir"
  # shellcheck disable=SC2086
  if ! $K train --run-dir "$dir" $flags >"$OUT/$name.log" 2>&1; then
    echo "FAIL $name: kiln train failed (see $OUT/$name.log)"; fail=1; continue
  fi
  read -r key op want <<<"$bar"
  got=$(grep -o "\"$key\": [^,]*" "$dir/summary.json" | head -1 | sed 's/.*: //')
  if awk -v g="$got" -v w="$want" -v op="$op" 'BEGIN {
      if (op == ">=") exit !(g + 0 >= w + 0); if (op == "<=") exit !(g + 0 <= w + 0); exit !(g == w) }'; then
    echo "ok   $name: $key = $got ($op $want)"
  else
    echo "FAIL $name: $key = $got, want $op $want"; fail=1
  fi
done
exit $fail
