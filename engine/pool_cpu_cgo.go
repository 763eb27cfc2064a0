//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_maxpool2x2_f32
#cgo nocallback kiln_maxpool2x2_f32
#include "pool_cpu.h"
*/
import "C"

import "unsafe"

// maxPlane2x2C runs pool_cpu.c's vectorised 2×2 max pool on one plane and
// reports false when the plane holds a NaN (out is then to be redone).
func maxPlane2x2C(out []float32, am []int32, x []float32, g *poolGeom) bool {
	if g.oh == 0 || g.ow == 0 {
		return true
	}
	var amp *C.int32_t
	if am != nil {
		amp = (*C.int32_t)(unsafe.Pointer(unsafe.SliceData(am)))
	}
	return C.kiln_maxpool2x2_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(out))), amp,
		(*C.float)(unsafe.Pointer(unsafe.SliceData(x))), C.int(g.w), C.int(g.oh), C.int(g.ow)) != 0
}

const haveMaxPool2x2C = true
