#!/usr/bin/env bash
# Installs Debian's CUDA 11.8 toolkit (nvidia-cuda-toolkit, in the non-free
# component): nvcc and cuobjdump for `make kernels` and `make build GPU=1`,
# cuda.h, and the driver's libcuda.so.1 to link against. No GPU is needed.
# Used by CI (.ci/run); about 2 minutes. Root, Debian 12 (bookworm).
set -euo pipefail
have_header() { [ -e /usr/include/cuda.h ] || [ -e /usr/local/cuda/include/cuda.h ]; }
if command -v nvcc >/dev/null && command -v cuobjdump >/dev/null && have_header; then
  echo "install-cuda-toolkit: $(nvcc --version | tail -1) already installed"
  exit 0
fi
command -v apt-get >/dev/null || { echo "install-cuda-toolkit: apt-get not found; install the CUDA toolkit (nvcc 11.8 or later) by hand"; exit 1; }
src=/etc/apt/sources.list.d/debian.sources
extra=/etc/apt/sources.list.d/debian-nonfree.sources
if [ ! -e "$extra" ]; then
  if [ -e "$src" ] && grep -q '^Components: main$' "$src"; then
    # The machine's own Debian sources, with the other components.
    sed 's/^Components: main$/Components: contrib non-free non-free-firmware/' "$src" >"$extra"
  elif ! grep -rqsE '^(deb .* non-free|Components:.*non-free)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "install-cuda-toolkit: cannot enable Debian's non-free component (no $src with 'Components: main')"
    exit 1
  fi
fi
log=/tmp/install-cuda-toolkit.log
if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nvidia-cuda-toolkit; } >"$log" 2>&1; then
  echo "install-cuda-toolkit: apt-get failed; the end of $log:"
  tail -30 "$log"
  exit 1
fi
command -v nvcc >/dev/null || { echo "install-cuda-toolkit: nvidia-cuda-toolkit installed but nvcc is not on PATH"; exit 1; }
echo "install-cuda-toolkit: $(nvcc --version | tail -1)"
