#!/usr/bin/env bash
# check-cpu-fallback.sh: on a machine WITHOUT a GPU (CI), the binaries of
# `make build GPU=1` must train on the CPU when asked for --device auto, with
# one log line saying why, and refuse --device cuda with a clear error.
# Run from the repository root after `make build GPU=1`.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d /tmp/kiln-fallback.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-cpu-fallback: $*"; exit 1; }
[ -x ./kiln ] && [ -x ./kiln-cuda ] || fail "./kiln and ./kiln-cuda not built (make build GPU=1)"
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  echo "check-cpu-fallback: a GPU is present; this check is for machines without one"; exit 0
fi
train=(train --dataset mnist --epochs 1 --subset 0.02 --seed 1)

# expect_cpu NAME CMD...: exit 0, a test accuracy, exactly one "device auto: ... on the CPU" line.
expect_cpu() {
  local name=$1; shift
  "$@" --run-dir "$tmp/$name" >"$tmp/$name.out" 2>"$tmp/$name.err"
  local rc=$?
  [ $rc -eq 0 ] || { tail -20 "$tmp/$name.err"; fail "$name: exit status $rc"; }
  grep -q 'test accuracy' "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "$name: no test accuracy"; }
  local n
  n=$(grep -c 'device auto: .*running on the CPU' "$tmp/$name.err")
  [ "$n" -eq 1 ] || { tail -20 "$tmp/$name.err"; fail "$name: want one 'device auto: ... running on the CPU' line, got $n"; }
  echo "check-cpu-fallback: $name: $(grep -o 'device auto: .*running on the CPU' "$tmp/$name.err")"
}
# expect_error NAME PATTERN CMD...: a non-zero exit with PATTERN in the message.
expect_error() {
  local name=$1 pat=$2; shift 2
  "$@" --run-dir "$tmp/$name" >"$tmp/$name.out" 2>"$tmp/$name.err" && fail "$name: succeeded, want an error"
  grep -qE "$pat" "$tmp/$name.err" || { tail -20 "$tmp/$name.err"; fail "$name: the error does not match /$pat/"; }
  echo "check-cpu-fallback: $name: $(grep -E "$pat" "$tmp/$name.err" | head -1)"
}

./kiln info >"$tmp/info" 2>&1 || { cat "$tmp/info"; fail "kiln info failed"; }
grep -q '^device:   none' "$tmp/info" || grep -q '^device:   cpu' "$tmp/info" || { cat "$tmp/info"; fail "kiln info: want no device"; }
./kiln-cuda info >"$tmp/info-cuda" 2>&1 || { cat "$tmp/info-cuda"; fail "kiln-cuda info failed"; }
grep -q '^build:    cuda' "$tmp/info-cuda" && grep -q '^device:   none' "$tmp/info-cuda" ||
  { cat "$tmp/info-cuda"; fail "kiln-cuda info: want the cuda build and no device"; }

expect_cpu kiln-auto ./kiln "${train[@]}" --device auto          # hands over to kiln-cuda where libcuda.so.1 loads
expect_cpu kiln-cuda-auto ./kiln-cuda "${train[@]}" --device auto
CUDA_VISIBLE_DEVICES= expect_cpu kiln-cuda-hidden ./kiln-cuda "${train[@]}" --device auto
expect_error kiln-cuda-explicit 'no CUDA device|NVIDIA driver' ./kiln-cuda "${train[@]}" --device cuda
expect_error kiln-explicit 'no CUDA device|NVIDIA driver' ./kiln "${train[@]}" --device cuda
# A kiln with no kiln-cuda beside it.
mkdir -p "$tmp/alone" && cp ./kiln "$tmp/alone/kiln"
expect_cpu kiln-alone-auto "$tmp/alone/kiln" "${train[@]}" --device auto
expect_error kiln-alone-explicit 'no CUDA backend|NVIDIA driver' "$tmp/alone/kiln" "${train[@]}" --device cuda
# A kiln-cuda from other sources than the kiln beside it (one left over from
# an earlier `make build GPU=1`): kiln does not hand over to it, and says why.
if git rev-parse -q --verify HEAD~1 >/dev/null && [ -n "$(git rev-parse HEAD 2>/dev/null)" ]; then
  mkdir -p "$tmp/stale"
  { git clone -q . "$tmp/prev" && git -C "$tmp/prev" checkout -q HEAD~1 && cp cuda/kernels.fatbin "$tmp/prev/cuda/" &&
    (cd "$tmp/prev" && go build -buildvcs=true -tags cuda -o "$tmp/stale/kiln-cuda" ./cmd/kiln); } ||
    fail "building the previous commit's kiln-cuda"
  cp ./kiln "$tmp/stale/kiln"
  expect_cpu kiln-stale-auto "$tmp/stale/kiln" "${train[@]}" --device auto
  grep -q 'kiln-cuda was built from revision' "$tmp/kiln-stale-auto.err" ||
    { tail -5 "$tmp/kiln-stale-auto.err"; fail "kiln-stale-auto: no word of the other build"; }
  expect_error kiln-stale-explicit 'kiln-cuda was built from revision' "$tmp/stale/kiln" "${train[@]}" --device cuda
else
  echo "check-cpu-fallback: no previous commit here: the stale kiln-cuda case is skipped"
fi
echo "check-cpu-fallback: ok"
