//go:build cuda && cgo

package cuda

import _ "embed"

// fatbin is every kernel of kernels/*.cu compiled by nvcc into one fat
// binary (machine code for sm_80 and sm_90, PTX for newer GPUs). `make
// kernels` writes cuda/kernels.fatbin; the cuda build embeds it, so the
// binary needs nothing of CUDA at run time beyond the driver. A build without
// it fails here: run `make kernels` first (make build GPU=1 does).
//
//go:embed kernels.fatbin
var fatbin string
