#!/usr/bin/env bash
# A check that make test-kernels-race can fail: a copy of the tree whose
# block sum in kernels/norm.cu lacks its trailing __syncthreads() (the next
# call's write to the scratch races the last reads of this one; the numbers
# still come out right under the emulator, where the race rarely bites) must
# stop under ThreadSanitizer with a race at that kernel's line.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d /tmp/kiln-race-check.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$tmp"
cd "$tmp"
python3 - <<'PY'
p = 'kernels/norm.cu'
s = open(p).read()
barrier = '\tv = kiln_warp_sum(v);\n\t__syncthreads();\n\treturn v;'
assert barrier in s, 'norm_block_sum changed: update scripts/check-race-detector.sh'
open(p, 'w').write(s.replace(barrier, '\tv = kiln_warp_sum(v);\n\treturn v;', 1))
PY
(cd engine && $GO generate ./...)
log=$tmp/race.log
if $GO test '-ldflags=-s=false -w=false' -tags cudaemu,kilntsan -count=1 -run 'CUDABatchNorm' ./engine >"$log" 2>&1; then
  echo "check-race-detector: the racy block sum passed under ThreadSanitizer"
  tail -20 "$log"
  exit 1
fi
if ! grep -q 'ThreadSanitizer: data race .*norm.cu' "$log"; then
  echo "check-race-detector: the run failed, but not on the race in norm.cu"
  tail -40 "$log"
  exit 1
fi
echo "check-race-detector: ok ($(grep -m1 'SUMMARY: ThreadSanitizer' "$log"))"
