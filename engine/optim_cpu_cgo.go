//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_sgd_step_f32
#cgo nocallback kiln_sgd_step_f32
#cgo noescape kiln_adamw_step_f32
#cgo nocallback kiln_adamw_step_f32
#include "optim_cpu.h"
*/
import "C"

// sgdStepC runs optim_cpu.c's SGD on float32 and reports true, or reports
// false for float64 (which stays in Go).
func sgdStepC[T Float](w, g, buf []T, c SGDConfig) bool {
	if isFloat64[T]() {
		return false
	}
	nesterov := 0
	if c.Nesterov {
		nesterov = 1
	}
	C.kiln_sgd_step_f32(cf32(w), cf32(g), cf32(buf), C.size_t(len(w)), C.float(c.LR),
		C.float(c.Momentum), C.float(c.WeightDecay), C.int(nesterov))
	return true
}

// adamWStepC is sgdStepC's counterpart for AdamW; k holds the step's
// constants as adamWStep computes them.
func adamWStepC[T Float](w, g, m, v []T, k adamWConsts[T]) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_adamw_step_f32(cf32(w), cf32(g), cf32(m), cf32(v), C.size_t(len(w)), C.float(k.b1),
		C.float(k.b2), C.float(k.stepSize), C.float(k.rbc2), C.float(k.decay), C.float(k.eps))
	return true
}
