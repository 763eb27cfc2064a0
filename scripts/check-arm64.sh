#!/usr/bin/env bash
# The build is not x86-only: a cgo cross build and vet for linux/arm64, and
# the engine's tests run there under qemu-user (the portable Go paths; the C
# fast paths are x86's), and a short training, stopped and resumed, to the
# straight run's bytes. Needs Debian's gcc-aarch64-linux-gnu and qemu-user
# (.ci/run installs them). About two and a half minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CC=aarch64-linux-gnu-gcc CGO_ENABLED=1 GOARCH=arm64
go build ./...
go vet ./...
qemu="qemu-aarch64 -L /usr/aarch64-linux-gnu"
go test -count=1 -exec "$qemu" ./engine/... ./internal/...
# The binary itself: a short training, resumed, on the portable kernels.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/kiln" ./cmd/kiln
run=(train --model lenet --dataset mnist --subset 0.01 --epochs 2 --threads 1 --no-visuals --device cpu)
$qemu "$tmp/kiln" "${run[@]}" --run-dir "$tmp/a" --stop-after-epoch 1 >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
$qemu "$tmp/kiln" train --run-dir "$tmp/a" --resume >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
$qemu "$tmp/kiln" "${run[@]}" --run-dir "$tmp/b" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
cmp "$tmp/a/last.safetensors" "$tmp/b/last.safetensors" || { echo "check-arm64: the resumed run's weights differ from the straight run's"; exit 1; }
info=$($qemu "$tmp/kiln" info 2>&1)
grep -q "bf16: *none: arm64" <<<"$info" || { echo "check-arm64: kiln info's bf16 line:"; echo "$info"; exit 1; }
echo "check-arm64: ok"
