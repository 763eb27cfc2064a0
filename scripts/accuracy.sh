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
  # --precision bf16 (CPUs with AVX512_BF16 or AMX): the bars of issue 13, and
  # within 0.3 points of the fp32 run of the same name when it ran too.
  "lenet-bf16|test_accuracy >= 0.989|--model lenet --dataset mnist --epochs 3 --seed 1 --precision bf16"
  "cnn-bf16|test_accuracy >= 0.91|--model cnn --dataset fashion-mnist --epochs 3 --seed 1 --precision bf16"
  "gmlp-bf16|test_accuracy >= 0.89|--model gmlp --dataset fashion-mnist --epochs 3 --seed 1 --precision bf16"
  "cbam-bf16|test_accuracy >= 0.89|--model cbam --dataset fashion-mnist --epochs 3 --seed 1 --precision bf16"
  "inception-bf16|test_accuracy >= 0.89|--model inception --dataset fashion-mnist --epochs 3 --seed 1 --precision bf16"
)
names=()
for r in "${runs[@]}"; do names+=("${r%%|*}"); done
for want in "$@"; do # a misspelt name ran nothing and passed
  if [[ " ${names[*]} " != *" $want "* ]]; then
    echo "accuracy.sh: no run named $want (have: ${names[*]})" >&2; exit 2
  fi
done
has_bf16=0
info=$($K info 2>/dev/null) # whole, first: grep -q on a pipe would SIGPIPE kiln under pipefail
grep -q '^precision: cpu fp32, bf16' <<<"$info" && has_bf16=1
for r in "${runs[@]}"; do
  IFS='|' read -r name bar flags <<<"$r"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  if [[ $name == *-bf16 ]] && [ $has_bf16 = 0 ]; then
    echo "skip $name: this CPU has no bf16 arithmetic (kiln info)"; continue
  fi
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
    fp32="$OUT/${name%-bf16}/summary.json"
    if [[ $name == *-bf16 ]] && [ -f "$fp32" ]; then
      ref=$(grep -o "\"$key\": [^,]*" "$fp32" | head -1 | sed 's/.*: //')
      if awk -v g="$got" -v r="$ref" 'BEGIN { d = g - r; exit !(d <= 0.003 + 1e-9 && d >= -0.003 - 1e-9) }'; then
        echo "ok   $name: within 0.3 points of fp32 ($ref)"
      else
        echo "FAIL $name: $got is more than 0.3 points from fp32's $ref"; fail=1
      fi
    fi
  else
    echo "FAIL $name: $key = $got, want $op $want"; fail=1
  fi
done
exit $fail
