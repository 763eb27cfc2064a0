//go:build cgo

package bench

// #cgo CFLAGS: -O2
// #include "peak.h"
import "C"

// fmaLoop runs the peak microbenchmark for iters iterations and returns the
// floating-point operations it did.
func fmaLoop(iters int64) float64 {
	C.kiln_peak_run(C.long(iters))
	return float64(C.kiln_peak_flops_per_iter()) * float64(iters)
}

func fmaKind() string {
	switch C.kiln_peak_kind() {
	case 2:
		return "AVX-512 FMA, 12 independent 16-lane accumulators"
	case 1:
		return "AVX2 FMA, 12 independent 8-lane accumulators (no AVX-512)"
	}
	return "portable multiply-add loop (no AVX2+FMA found)"
}

const haveFMALoop = true
