//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm
#cgo noescape kiln_ln_forward_f32
#cgo nocallback kiln_ln_forward_f32
#cgo noescape kiln_ln_backward_f32
#cgo nocallback kiln_ln_backward_f32
#cgo noescape kiln_bn_moments_f32
#cgo nocallback kiln_bn_moments_f32
#cgo noescape kiln_bn_apply_f32
#cgo nocallback kiln_bn_apply_f32
#cgo noescape kiln_bn_backward_sums_f32
#cgo nocallback kiln_bn_backward_sums_f32
#cgo noescape kiln_bn_backward_dx_f32
#cgo nocallback kiln_bn_backward_dx_f32
#include "norm_cpu.h"
*/
import "C"

import "unsafe"

// haveNormC says whether norm_cpu.c's AVX2 kernels run: the ISA level in
// use (isa.go) is AVX2 or higher.
func haveNormC() bool { return atISA(isaAVX2) }

// lnRows is a run of LayerNorm rows of length d: row r of x starts at r·ldx,
// of out (dx in backward) at r·ldo, of dout at r·ldd; mean and rstd hold one
// value per row.
type lnRows[T Float] struct {
	out, x, dout, mean, rstd, gamma, beta []T
	ldo, ldx, ldd, rows, d                int
	eps                                   float64
}

func cf32[T Float](s []T) *C.float {
	if s == nil {
		return nil
	}
	return (*C.float)(unsafe.Pointer(unsafe.SliceData(s)))
}

func cf64(s []float64) *C.double {
	if s == nil {
		return nil
	}
	return (*C.double)(unsafe.Pointer(unsafe.SliceData(s)))
}

// layerNormC runs the rows forward (or backward, adding into the float64
// partials dg and db, each may be nil) through norm_cpu.c and reports true;
// it reports false (float64, no AVX2) and does nothing otherwise.
func layerNormC[T Float](r *lnRows[T], backward bool, dg, db []float64) bool {
	if isFloat64[T]() || !haveNormC() || r.rows <= 0 {
		return false
	}
	if backward {
		C.kiln_ln_backward_f32(cf32(r.out), C.long(r.ldo), cf64(dg), cf64(db), cf32(r.dout), C.long(r.ldd),
			cf32(r.x), C.long(r.ldx), cf32(r.mean), cf32(r.rstd), cf32(r.gamma), C.long(r.rows), C.long(r.d))
	} else {
		C.kiln_ln_forward_f32(cf32(r.out), C.long(r.ldo), cf32(r.mean), cf32(r.rstd), cf32(r.x), C.long(r.ldx),
			cf32(r.gamma), cf32(r.beta), C.long(r.rows), C.long(r.d), C.double(r.eps))
	}
	return true
}

// layerNormRowsC runs rows [lo, hi) of a float32 LayerNorm task through
// layerNormC; dg and db are the part's float64 partials or nil.
func layerNormRowsC[T Float](t *layerNormTask[T], dg, db []float64, lo, hi int) bool {
	d := t.d
	r := lnRows[T]{x: t.x[lo*d:], gamma: t.gamma, beta: t.beta, ldo: d, ldx: d, ldd: d, rows: hi - lo, d: d, eps: t.eps}
	if t.out != nil {
		r.out = t.out[lo*d:]
	}
	if t.backward {
		r.dout, r.mean, r.rstd = t.dout[lo*d:], t.mean[lo:], t.rstd[lo:]
	} else {
		if t.mean != nil {
			r.mean = t.mean[lo:]
		}
		if t.rstd != nil {
			r.rstd = t.rstd[lo:]
		}
	}
	return layerNormC(&r, t.backward, dg, db)
}

// Batch norm channel kernels for float32: channel ch's block of sample i
// starts at (i·C + ch)·HW. Each reports false (float64, no AVX2) and does
// nothing otherwise.

func bnMomentsC[T Float](t *batchNormTask[T], ch int) (mean, ss float64, ok bool) {
	if isFloat64[T]() || !haveNormC() || t.n*t.hw == 0 {
		return 0, 0, false
	}
	var m, s C.double
	C.kiln_bn_moments_f32(cf32(t.x[ch*t.hw:]), C.long(t.n), C.long(t.c*t.hw), C.long(t.hw), &m, &s)
	return float64(m), float64(s), true
}

func bnApplyC[T Float](t *batchNormTask[T], ch int, a, b T) bool {
	if isFloat64[T]() || !haveNormC() || t.n*t.hw == 0 {
		return false
	}
	C.kiln_bn_apply_f32(cf32(t.out[ch*t.hw:]), cf32(t.x[ch*t.hw:]), C.long(t.n), C.long(t.c*t.hw), C.long(t.hw),
		C.float(a), C.float(b), cflag(t.relu))
	return true
}

func bnBackwardSumsC[T Float](t *batchNormTask[T], ch int, mean float64) (sumD, sumDX float64, ok bool) {
	if isFloat64[T]() || !haveNormC() || t.n*t.hw == 0 {
		return 0, 0, false
	}
	var d, dx C.double
	C.kiln_bn_backward_sums_f32(cf32(t.x[ch*t.hw:]), cf32(t.dout[ch*t.hw:]), t.reluPlanes(ch), C.long(t.n),
		C.long(t.c*t.hw), C.long(t.hw), C.double(mean), &d, &dx)
	return float64(d), float64(dx), true
}

func bnBackwardDxC[T Float](t *batchNormTask[T], ch int, k, a, b T) bool {
	if isFloat64[T]() || !haveNormC() || t.n*t.hw == 0 {
		return false
	}
	C.kiln_bn_backward_dx_f32(cf32(t.out[ch*t.hw:]), cf32(t.x[ch*t.hw:]), cf32(t.dout[ch*t.hw:]), t.reluPlanes(ch),
		C.long(t.n), C.long(t.c*t.hw), C.long(t.hw), C.float(k), C.float(a), C.float(b))
	return true
}

// reluPlanes is the fused ReLU's output from channel ch on, or NULL.
func (t *batchNormTask[T]) reluPlanes(ch int) *C.float {
	if t.reluOut == nil {
		return nil
	}
	return cf32(t.reluOut[ch*t.hw:])
}
