#!/usr/bin/env bash
# make test-kernels: every CUDA kernel source compiled by g++ under
# kernels/cuda_emu.h with AddressSanitizer, run on the CPU and compared with
# its CPU op. Prints one line per kernel: <symbol> max_err=<x> tol=<y> ok|FAIL.
# The tests are the same ones `go test -tags cuda` runs on a GPU.
#
# make test-kernels-race (this script with "race"): the same tests with the
# kernels under ThreadSanitizer instead (the kilntsan tag, cuda/emu_tsan.go).
# The emulator plays each CUDA thread of a block on its own OS thread, so a
# missing __syncthreads() or __syncwarp() is a data race between two of
# them, reported at the kernel's source line and stopping the run, though
# the numbers may well come out right on the CPU (and wrong on the GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
# go test strips the binaries it runs: the symbols stay, so that a report
# names the kernel's source line.
symbols="-ldflags=-s=false -w=false"
sanitizer=(-asan -tags cudaemu "$symbols")
what="AddressSanitizer"
# The whole-model, layer and benchmark (kernel profile) CUDA tests live
# outside engine/.
pkgs=(./cuda/... ./engine/... ./layers/... ./trainer/... ./bench/...)
if [ "${1:-}" = race ]; then
  sanitizer=(-tags cudaemu,kilntsan "$symbols")
  what="ThreadSanitizer"
  # engine's tests launch every kernel (4 minutes on two cores); layers,
  # trainer and bench launch the same kernels again (17 minutes more).
  pkgs=(./cuda/... ./engine/...)
fi
log=$(mktemp /tmp/kiln-test-kernels.XXXXXX)
# An edited kernel recompiles through cuda/emu_sources_gen.go (go generate
# ./engine); without it the emulator refuses to run the old build.
# -run keeps to the CUDA tests (names contain CUDA), which is all that
# changes with the tag.
KILN_KERNEL_COVERAGE=1 $GO test -v "${sanitizer[@]}" -count=1 -timeout 30m \
  -run 'CUDA' "${pkgs[@]}" >"$log" 2>&1
rc=$?
grep -E ' max_err=' "$log" | sort
if [ $rc -ne 0 ]; then
  echo "--- make test-kernels failed; the log ($log) ends:"
  grep -m1 -A12 'WARNING: ThreadSanitizer' "$log"
  grep -vE ' max_err=' "$log" | tail -60
  exit $rc
fi
grep -E '^(ok|--- FAIL|FAIL)' "$log"
n=$(grep -cE ' max_err=.* ok$' "$log")
echo "test-kernels: $n kernels ok under the emulator with $what"
