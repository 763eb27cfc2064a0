//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_maxpool2x2_f32
#cgo nocallback kiln_maxpool2x2_f32
#cgo noescape kiln_maxpool2x2_backward_f32
#cgo nocallback kiln_maxpool2x2_backward_f32
#cgo noescape kiln_maxpool_f32
#cgo nocallback kiln_maxpool_f32
#cgo noescape kiln_avgpool_f32
#cgo nocallback kiln_avgpool_f32
#include "pool_cpu.h"
*/
import "C"

import "unsafe"

// maxPool2x2C runs pool_cpu.c's vectorised 2×2 max pool (then ReLU, with
// relu) over planes consecutive planes and returns how many it finished:
// fewer when the next one holds a NaN, for the caller to redo.
func maxPool2x2C(out []float32, am []int32, x []float32, g *poolGeom, planes int, relu bool) int {
	var amp *C.int32_t
	if am != nil {
		amp = (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(am)))
	}
	return int(C.kiln_maxpool2x2_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(out))), amp,
		(*C.float)(unsafe.Pointer(unsafe.SliceData(x))), C.int(g.w), C.int(g.h), C.int(g.oh), C.int(g.ow),
		C.int(planes), C.int(b2i(relu))))
}

// maxPool2x2BackwardC writes planes consecutive dx planes of the 2×2 max
// pool's backward (with keep, the fused ReLU's output: only where keep > 0)
// and returns how many it finished: fewer when the next one has an index
// outside its window, for the caller to redo.
func maxPool2x2BackwardC(dx, dout, keep []float32, am []int32, g *poolGeom, planes int) int {
	var kp *C.float
	if keep != nil {
		kp = (*C.float)(unsafe.Pointer(unsafe.SliceData(keep)))
	}
	return int(C.kiln_maxpool2x2_backward_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(dx))),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(dout))), kp, (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(am))),
		C.int(g.w), C.int(g.h), C.int(g.oh), C.int(g.ow), C.int(planes)))
}

// havePoolC says the float32 max pools and the general average pools run
// in pool_cpu.c (the Go loops are the fallback without cgo).
const havePoolC = true

// maxPoolC runs pool_cpu.c's general max pool (any window; then ReLU, with
// relu) over planes consecutive planes, with work (H·W + (H+1)·OW int64s),
// and returns how many it finished: fewer when the next one holds a NaN.
func maxPoolC(out []float32, am []int32, x []float32, work []int64, g *poolGeom, planes int, relu bool) int {
	var amp *C.int32_t
	if am != nil {
		amp = (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(am)))
	}
	return int(C.kiln_maxpool_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(out))), amp,
		(*C.float)(unsafe.Pointer(unsafe.SliceData(x))), (*C.int64_t)(unsafe.Pointer(unsafe.SliceData(work))),
		C.int(g.h), C.int(g.w), C.int(g.oh), C.int(g.ow), C.int(g.kh), C.int(g.kw), C.int(g.sh), C.int(g.sw),
		C.int(g.ph), C.int(g.pw), C.int(planes), C.int(b2i(relu))))
}

// avgPoolC runs pool_cpu.c's general average pool over planes consecutive
// planes with work (H·OW float32s): forward (a the output, b the input) or,
// with backward, a = dx from b = dout.
func avgPoolC(a, b, work []float32, g *poolGeom, planes int, backward bool) {
	C.kiln_avgpool_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(a))), (*C.float)(unsafe.Pointer(unsafe.SliceData(b))),
		(*C.float)(unsafe.Pointer(unsafe.SliceData(work))), C.int(g.h), C.int(g.w), C.int(g.oh), C.int(g.ow),
		C.int(g.kh), C.int(g.kw), C.int(g.sh), C.int(g.sw), C.int(g.ph), C.int(g.pw), C.int(planes), C.int(b2i(backward)))
}
