//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_channelpool_forward_f32
#cgo nocallback kiln_channelpool_forward_f32
#cgo noescape kiln_channelpool_backward_f32
#cgo nocallback kiln_channelpool_backward_f32
#cgo noescape kiln_channel_gate_backward_f32
#cgo nocallback kiln_channel_gate_backward_f32
#cgo noescape kiln_spatial_gate_backward_f32
#cgo nocallback kiln_spatial_gate_backward_f32
#cgo noescape kiln_globalmax_forward_f32
#cgo nocallback kiln_globalmax_forward_f32
#cgo noescape kiln_transpose12_f32
#cgo nocallback kiln_transpose12_f32
#include "channelpool_cpu.h"
*/
import "C"

import "unsafe"

// The float32 loops of channelpool.go in C (channelpool_cpu.c), with the Go
// loops' bits. Each reports true when it ran, false for float64 (which stays
// in Go).

func ci32(s []int32) *C.int32_t { return (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(s))) }

// channelPoolForwardC is channelPoolForward for float32.
func channelPoolForwardC[T Float](out []T, argmax []int32, x []T, n, c, hw int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_channelpool_forward_f32(cf32(out), ci32(argmax), cf32(x), C.long(n), C.long(c), C.long(hw))
	return true
}

// channelPoolBackwardC is channelPoolBackward for float32; every argmax must
// be in [0,c).
func channelPoolBackwardC[T Float](dx, dout []T, argmax []int32, n, c, hw int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_channelpool_backward_f32(cf32(dx), cf32(dout), ci32(argmax), C.long(n), C.long(c), C.long(hw))
	return true
}

// globalMaxForwardC is globalMaxForward for float32.
func globalMaxForwardC[T Float](out []T, argmax []int32, x []T, hw int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_globalmax_forward_f32(cf32(out), ci32(argmax), cf32(x), C.long(len(out)), C.long(hw))
	return true
}

// transpose12C is transpose12 for float32.
func transpose12C[T Float](out, x []T, n, a, b int) bool {
	if isFloat64[T]() {
		return false
	}
	C.kiln_transpose12_f32(cf32(out), cf32(x), C.long(n), C.long(a), C.long(b))
	return true
}

// channelGateBackwardC is channelGateBackward for float32; every argmax
// must be in [0,hw).
func channelGateBackwardC[T Float](dx, dout, scale, dAvg, dMax []T, argmax []int32, hw int) bool {
	if isFloat64[T]() || len(scale) == 0 {
		return false
	}
	C.kiln_channel_gate_backward_f32(cf32(dx), cf32(dout), cf32(scale), cf32(dAvg), cf32(dMax), ci32(argmax),
		C.long(len(scale)), C.long(hw))
	return true
}

// spatialGateBackwardC is spatialGateBackward for float32; every argmax
// must be in [0,c).
func spatialGateBackwardC[T Float](dx, dout, att, dPooled []T, argmax []int32, n, c, hw int) bool {
	if isFloat64[T]() || n == 0 || hw == 0 {
		return false
	}
	C.kiln_spatial_gate_backward_f32(cf32(dx), cf32(dout), cf32(att), cf32(dPooled), ci32(argmax), C.long(n),
		C.long(c), C.long(hw))
	return true
}
