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
	if C.kiln_peak_kind() == 1 {
		return "AVX2 FMA, 12 independent 8-lane accumulators"
	}
	return "portable multiply-add loop (no AVX2+FMA found)"
}

const haveFMALoop = true
