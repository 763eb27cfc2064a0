//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_sgu_gate_f32
#cgo nocallback kiln_sgu_gate_f32
#cgo noescape kiln_sgu_gate_backward_f32
#cgo nocallback kiln_sgu_gate_backward_f32
#include "gating_cpu.h"
#include "gemm_cpu.h"
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

// gemmIn is gemm, but on the calling thread alone when inPart says the caller
// already is one of several parallel parts: splitting its products again
// would put a third thread on the cores (the C pool's) and make the parts
// wait on each other.
func gemmIn[T Float](inPart, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if !inPart || isFloat64[T]() || m == 0 || n == 0 {
		gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	a32, b32, c32 := asF32(a), asF32(b), asF32(c)
	checkGemmArgs(transA, transB, m, n, k, len(a32), lda, len(b32), ldb, len(c32), ldc)
	sgemmOne(transA, transB, m, n, k, float32(alpha), a32, lda, b32, ldb, float32(beta), c32, ldc)
}
