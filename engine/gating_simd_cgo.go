//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_sgu_gate_f32
#cgo nocallback kiln_sgu_gate_f32
#cgo noescape kiln_sgu_gate_backward_f32
#cgo nocallback kiln_sgu_gate_backward_f32
#include "gating_simd.h"
*/
import "C"

// sguGateC computes one sample's gate in C for float32 (vm += b per row, out
// = u ⊙ vm) and reports true; false for float64.
func sguGateC[T Float](out, vm, z, b []T, t, d int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_sgu_gate_f32(cf32(out), cf32(vm), cf32(z), cf32(b), C.long(t), C.long(d))
	return true
}

// sguGateBackwardC computes one sample's dvm = dout ⊙ u, du = dout ⊙ vm (dz
// may be nil) and db += Σ_d dvm in C for float32 and reports true; false for
// float64.
func sguGateBackwardC[T Float](dvm, dz []T, db []float64, dout, z, vm []T, t, d int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_sgu_gate_backward_f32(cf32(dvm), cf32(dz), cf64(db), cf32(dout), cf32(z), cf32(vm), C.long(t), C.long(d))
	return true
}
