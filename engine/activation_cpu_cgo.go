//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm
#include "activation_cpu.h"
*/
import "C"

import "unsafe"

// activationC runs the float32 kernels of activation_cpu.c and reports true, or
// reports false for float64 (which stays in Go).
func activationC[T Float](dst, a, x, y []T, kind Activation, backward bool) bool {
	if isFloat64[T]() || len(dst) == 0 {
		return false
	}
	p := func(s []T) *C.float {
		if s == nil {
			return nil
		}
		return (*C.float)(unsafe.Pointer(unsafe.SliceData(s)))
	}
	if backward {
		C.kiln_act_backward_f32(p(dst), p(a), p(x), p(y), C.size_t(len(dst)), C.int(kind))
	} else {
		C.kiln_act_forward_f32(p(dst), p(a), C.size_t(len(dst)), C.int(kind))
	}
	return true
}

// geluDerivC runs GELU's forward with its derivative (dst = GELU(a), y = f'(a))
// or the backward from it (dst = a·y) in C for float32, and reports whether it did.
func geluDerivC[T Float](dst, a, y []T, backward bool) bool {
	if isFloat64[T]() || len(dst) == 0 {
		return false
	}
	p := func(s []T) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }
	if backward {
		C.kiln_mul_f32(p(dst), p(a), p(y), C.size_t(len(dst)))
	} else {
		C.kiln_gelu_forward_deriv_f32(p(dst), p(y), p(a), C.size_t(len(dst)))
	}
	return true
}
