#!/usr/bin/env bash
# The build is not x86-only: a cgo cross build and vet for linux/arm64, and
# the engine's tests run there under qemu-user (the portable Go paths; the C
# fast paths are x86's). Needs Debian's gcc-aarch64-linux-gnu and qemu-user
# (.ci/run installs them). About a minute on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CC=aarch64-linux-gnu-gcc CGO_ENABLED=1 GOARCH=arm64
go build ./...
go vet ./...
go test -count=1 -exec "qemu-aarch64 -L /usr/aarch64-linux-gnu" ./engine/ ./internal/...
echo "check-arm64: ok"
