#!/usr/bin/env bash
# make test-kernels: every CUDA kernel source compiled by g++ under
# kernels/cuda_emu.h with AddressSanitizer, run on the CPU and compared with
# its CPU op. Prints one line per kernel: <symbol> max_err=<x> tol=<y> ok|FAIL.
# The tests are the same ones `go test -tags cuda` runs on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
log=$(mktemp /tmp/kiln-test-kernels.XXXXXX)
# An edited kernel recompiles through cuda/emu_sources_gen.go (go generate
# ./engine); without it the emulator refuses to run the old build.
# The whole-model, layer and benchmark (kernel profile) CUDA tests live
# outside engine/; -run keeps to the CUDA tests (names contain CUDA), which
# is all that changes with the tag.
KILN_KERNEL_COVERAGE=1 $GO test -v -asan -tags cudaemu -count=1 -timeout 30m \
  -run 'CUDA' ./cuda/... ./engine/... ./layers/... ./trainer/... ./bench/... >"$log" 2>&1
rc=$?
grep -E ' max_err=' "$log" | sort
if [ $rc -ne 0 ]; then
  echo "--- make test-kernels failed; the log ($log) ends:"
  grep -vE ' max_err=' "$log" | tail -60
  exit $rc
fi
grep -E '^(ok|--- FAIL|FAIL)' "$log"
n=$(grep -cE ' max_err=.* ok$' "$log")
echo "test-kernels: $n kernels ok under the emulator with AddressSanitizer"
