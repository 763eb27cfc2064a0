//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_bmul_f32
#cgo nocallback kiln_bmul_f32
#cgo noescape kiln_bmul_backward_f32
#cgo nocallback kiln_bmul_backward_f32
#include "broadcast_cpu.h"
*/
import "C"

import "unsafe"

func cint(p *[maxBroadcastRank]int) *C.long { return (*C.long)(unsafe.Pointer(&p[0])) }

func cflag(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// broadcastMulC runs broadcastMultiply in broadcast_cpu.c for float32 and
// reports true; false for float64.
func broadcastMulC[T Float](p *broadcastPlan, out, x, g []T) bool {
	if isFloat64[T]() || len(x) == 0 {
		return false
	}
	C.kiln_bmul_f32(cf32(out), cf32(x), cf32(g), C.long(len(x)), C.long(p.k), cint(&p.size), cint(&p.stride),
		cflag(p.bcast[p.k-1]))
	return true
}

// broadcastMulBackwardC runs broadcastMultiplyBackward in broadcast_cpu.c
// for float32 and reports true; false for float64.
func broadcastMulBackwardC[T Float](p *broadcastPlan, dx, dg, dout, x, g []T) bool {
	if isFloat64[T]() || len(x) == 0 {
		return false
	}
	C.kiln_bmul_backward_f32(cf32(dx), cf32(dg), cf32(dout), cf32(x), cf32(g), C.long(len(x)), C.long(p.k),
		cint(&p.size), cint(&p.stride), cflag(p.bcast[p.k-1]))
	return true
}
